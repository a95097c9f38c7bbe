"""``--broker URL`` -> ``BrokerTarget``, with one-line errors that name what is wrong.

How this works: ``urllib.parse.urlsplit`` does the splitting; everything else is checked by
hand so that each mistake gets its own message (``InvalidTarget``, a ``ValueError``). The
password may come from an environment variable so it never has to appear on a command line;
messages never echo a password (everything between the user name and the last ``@`` is
redacted, so a password holding ``@`` or ``:`` is hidden whole). TLS files are loaded into an
``ssl.SSLContext`` while parsing (``tls_context_from_files``), so a CA bundle that is not PEM
or a certificate without its key is a usage error that names the option and the file, not a
connection failure later.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..exitcodes import UsageError
from ..mqtt.protocol import UnknownProtocol, parse_protocol
from .model import BrokerTarget

DEFAULT_PORTS: dict[str, int] = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}
DEFAULT_PASSWORD_ENV = "AETHERDIAG_PASSWORD"


class InvalidTarget(UsageError, ValueError):
    """The broker URL or a TLS option is unusable; the message is one line for the user."""


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for error messages).

    The user information ends at the *last* ``@`` (as ``urlsplit`` reads it), so a password
    holding ``@``, ``:`` or even ``/`` is hidden whole; when in doubt more is hidden, never less.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, tail = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{tail}"


class _EncryptedKey(Exception):
    """Raised from the passphrase callback: OpenSSL must never prompt on the terminal."""


def _no_passphrase() -> str:
    raise _EncryptedKey


def _ssl_reason(exc: BaseException) -> str:
    """OpenSSL's reason in words (``no certificate or crl found``), without its source line."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLError) and reason:
        return str(reason).lower().replace("_", " ")
    text = str(getattr(exc, "strerror", None) or exc or type(exc).__name__)
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)", "", text)
    text = text.rstrip(".").lower()
    return "malformed pem data" if text == "pem lib" else text or type(exc).__name__


def tls_context_from_files(
    ca_file: str | None, cert_file: str | None, key_file: str | None, insecure: bool,
) -> ssl.SSLContext:
    """The client TLS context for these options, loaded now; a file that does not load is an
    ``InvalidTarget`` naming the option and the file. OpenSSL never prompts for a passphrase
    (an encrypted key is an error)."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        if ca_file is None:  # the system store did not load: not a mistake in the options
            raise InvalidTarget(f"cannot load the system CA certificates ({_ssl_reason(exc)})"
                                ) from None
        raise InvalidTarget(f"--ca-file {ca_file}: not a PEM CA bundle ({_ssl_reason(exc)})"
                            ) from None
    if cert_file:
        _load_client_certificate(ctx, cert_file, key_file)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _load_client_certificate(ctx: ssl.SSLContext, cert_file: str, key_file: str | None) -> None:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:  # does the file hold a certificate at all? (load_cert_chain only says "PEM lib")
        probe.load_verify_locations(cafile=cert_file)
    except (OSError, ssl.SSLError):
        raise InvalidTarget(f"--cert-file {cert_file}: no PEM certificate in the file"
                            ) from None
    try:
        ctx.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except _EncryptedKey:
        where = f"--key-file {key_file}" if key_file else f"--cert-file {cert_file}"
        raise InvalidTarget(f"{where}: the private key is encrypted and aetherdiag cannot ask "
                            "for its passphrase (give an unencrypted key)") from None
    except (OSError, ssl.SSLError) as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            if key_file:
                raise InvalidTarget(f"--key-file {key_file}: the key does not match the "
                                    f"certificate in --cert-file {cert_file}") from None
            raise InvalidTarget(f"--cert-file {cert_file}: the private key in the file does "
                                "not match its certificate") from None
        if key_file:
            raise InvalidTarget(f"--key-file {key_file}: no usable PEM private key in the file "
                                f"({_ssl_reason(exc)})") from None
        raise InvalidTarget(f"--cert-file {cert_file}: no private key in the file (give "
                            "--key-file)") from None


def parse_broker_url(
    url: str,
    *,
    protocol: str = "5",
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    insecure: bool = False,
    password_env: str | None = DEFAULT_PASSWORD_ENV,
    password_env_required: bool = False,
    environ: Mapping[str, str] | None = None,
) -> BrokerTarget:
    """Parse ``mqtt[s]://[user[:pass]@]host[:port]`` or ``ws[s]://...[/path]``.

    Default ports: mqtt 1883, mqtts 8883, ws 80, wss 443; websocket path ``/mqtt`` unless the
    URL has one. User name and password are percent-decoded. When the URL names a user but no
    password, the password is read from the environment variable ``password_env`` (if set);
    with ``password_env_required`` (the user named the variable) an unset or empty variable is
    an error instead of "no password". TLS options (``ca_file``, ``cert_file``, ``key_file``,
    ``insecure``) need ``mqtts://`` or ``wss://``; the files must exist and load (PEM CA
    bundle; certificate with its unencrypted, matching key). ``protocol`` is ``"3.1.1"`` or
    ``"5"``.

    Raises ``InvalidTarget`` with a one-line message on any problem.
    """
    env = os.environ if environ is None else environ
    text = url.strip()
    if not text:
        raise InvalidTarget("broker URL is empty (expected mqtt://host[:port])")
    shown = _redact(text)
    try:
        version = parse_protocol(protocol)
    except UnknownProtocol as exc:
        raise InvalidTarget(str(exc)) from None
    if "://" not in text:
        raise InvalidTarget(
            f"broker URL {shown!r} has no scheme (expected mqtt://, mqtts://, ws:// or wss://)"
        )
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an unbalanced "[" in an IPv6 host
        raise InvalidTarget(f"broker URL {shown!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidTarget(
            f"unsupported scheme {parts.scheme + '://'!r} in broker URL {shown!r} "
            "(use mqtt://, mqtts://, ws:// or wss://)"
        )
    if "@" in f"{parts.path}?{parts.query}#{parts.fragment}":
        # "user:pa/ss@host": the password's "/" (or "?", "#") ended the host part early, so the
        # rest of the password would pass for a host, port or path: refuse, never echo it
        raise InvalidTarget(
            f"broker URL {shown!r} has an '@' after the host part; percent-encode '/', '?', "
            "'#' and '@' in user names and passwords (%2F, %3F, %23, %40)"
        )
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.count(":") > 1 and not hostport.startswith("["):
        raise InvalidTarget(f"broker URL {shown!r}: write an IPv6 address in brackets, e.g. "
                            f"{scheme}://[::1]:{DEFAULT_PORTS[scheme]}")
    host = parts.hostname
    if not host:
        raise InvalidTarget(f"broker URL {shown!r} has no host")
    if ":" in host:  # IPv6; a zone is written %25 in a URL ([fe80::1%25eth0])
        host = unquote(host)
    try:
        explicit_port = parts.port
    except ValueError:
        raw = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise InvalidTarget(
            f"bad port {raw!r} in broker URL {shown!r} (expected 1-65535)"
        ) from None
    if explicit_port == 0:
        raise InvalidTarget(f"bad port '0' in broker URL {shown!r} (expected 1-65535)")
    if parts.netloc.endswith(":"):
        raise InvalidTarget(f"empty port in broker URL {shown!r} (expected 1-65535)")
    port = explicit_port if explicit_port is not None else DEFAULT_PORTS[scheme]
    websocket = scheme in ("ws", "wss")
    path = parts.path
    if parts.query:
        path = f"{path}?{parts.query}"
    if not websocket and path not in ("", "/"):
        raise InvalidTarget(
            f"broker URL {shown!r} has a path or query; only ws:// and wss:// URLs take one"
        )
    if parts.fragment:
        raise InvalidTarget(f"broker URL {shown!r} has a '#' fragment, which is not allowed")
    if not websocket or not path or path == "?":
        path = "/mqtt"

    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username == "":
        if password:
            raise InvalidTarget(f"broker URL {shown!r} has a password but no user name")
        username = None
    if username is not None and password is None and password_env:
        password = env.get(password_env) or None
        if password is None and password_env_required:
            raise InvalidTarget(
                f"--password-env {password_env}: the variable is not set (or empty), and "
                f"broker URL {shown!r} names user {username!r} without a password"
            )

    tls = scheme in ("mqtts", "wss")
    options = {"--ca-file": ca_file, "--cert-file": cert_file, "--key-file": key_file}
    given = [name for name, value in options.items() if value]
    if insecure:
        given.append("--insecure")
    if given and not tls:
        raise InvalidTarget(
            f"{', '.join(given)} given but the broker URL is {scheme}:// "
            f"(TLS options need mqtts:// or wss://)"
        )
    if key_file and not cert_file:
        raise InvalidTarget("--key-file given without --cert-file")
    for name, value in options.items():
        if value and not os.path.isfile(value):
            what = "is a directory" if os.path.isdir(value) else "does not exist"
            raise InvalidTarget(f"{name} {value}: file {what}")
        if value and not os.access(value, os.R_OK):
            raise InvalidTarget(f"{name} {value}: file is not readable")
    if ca_file or cert_file:  # load them now: a bad file is the user's mistake (exit 2)
        tls_context_from_files(ca_file or None, cert_file or None, key_file or None, insecure)

    return BrokerTarget(
        scheme=scheme,
        host=host,
        port=port,
        username=username,
        password=password,
        path=path,
        ca_file=ca_file or None,
        cert_file=cert_file or None,
        key_file=key_file or None,
        insecure=insecure,
        protocol=version,
    )


@dataclass(frozen=True)
class TargetOptions:
    """The TLS and password options every broker-facing command takes, as one value:
    ``TargetOptions(ca_file, cert_file, key_file, insecure, password_env)`` straight from the
    command's parameters (declared once above as ``*_OPTION``)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    password_env: str | None = None

    @property
    def tls_given(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.key_file or self.insecure)

    def refuse_tls(self, why: str = "--broker mqtts://...") -> None:
        """A usage error when TLS options are given where no broker URL can use them."""
        if self.tls_given:
            raise UsageError(f"--ca-file, --cert-file, --key-file and --insecure need {why}")

    def target(self, url: str, protocol: str) -> BrokerTarget:
        """``--broker URL`` with these options -> BrokerTarget, or a usage error.

        ``password_env`` is ``--password-env`` as given: ``None`` means the default variable
        (AETHERDIAG_PASSWORD), whose absence means "no password"; a variable the user named
        must be set when the URL has a user but no password. TLS files are loaded here, so a
        file that does not load is a usage error (2), not an unreachable broker (3).
        """
        env = self.password_env
        try:
            return parse_broker_url(
                url, protocol=protocol, ca_file=_text(self.ca_file),
                cert_file=_text(self.cert_file), key_file=_text(self.key_file),
                insecure=self.insecure,
                password_env=DEFAULT_PASSWORD_ENV if env is None else env,
                password_env_required=env is not None,
            )
        except InvalidTarget as exc:
            text = str(exc)  # messages about another option (--ca-file ...) start with its name
            raise UsageError(text if text.startswith("--") else f"--broker: {text}") from None


def _text(path: Path | None) -> str | None:
    return str(path) if path else None
