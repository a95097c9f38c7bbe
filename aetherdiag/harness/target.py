"""``--broker URL`` -> ``BrokerTarget``, with one-line errors that name what is wrong.

How this works: ``urllib.parse.urlsplit`` does the splitting; everything else is checked by
hand so that each mistake gets its own message (``InvalidTarget``, a ``ValueError``). The
password may come from an environment variable so it never has to appear on a command line;
messages never echo a password.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from .model import BrokerTarget

DEFAULT_PORTS: dict[str, int] = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}
PROTOCOLS: dict[str, str] = {"3.1.1": "3.1.1", "311": "3.1.1", "5": "5", "5.0": "5"}


class InvalidTarget(ValueError):
    """The broker URL or a TLS option is unusable; the message is one line for the user."""


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for error messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{userinfo}{at}{hostport}{slash}{tail}"


def parse_broker_url(
    url: str,
    *,
    protocol: str = "5",
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    insecure: bool = False,
    password_env: str | None = "AETHERDIAG_PASSWORD",
    environ: Mapping[str, str] | None = None,
) -> BrokerTarget:
    """Parse ``mqtt[s]://[user[:pass]@]host[:port]`` or ``ws[s]://...[/path]``.

    Default ports: mqtt 1883, mqtts 8883, ws 80, wss 443; websocket path ``/mqtt`` unless the
    URL has one. User name and password are percent-decoded. When the URL names a user but no
    password, the password is read from the environment variable ``password_env`` (if set).
    TLS options (``ca_file``, ``cert_file``, ``key_file``, ``insecure``) need ``mqtts://`` or
    ``wss://`` and the files must exist. ``protocol`` is ``"3.1.1"`` or ``"5"``.

    Raises ``InvalidTarget`` with a one-line message on any problem.
    """
    env = os.environ if environ is None else environ
    text = url.strip()
    if not text:
        raise InvalidTarget("broker URL is empty (expected mqtt://host[:port])")
    shown = _redact(text)
    version = PROTOCOLS.get(protocol.strip().lower().removeprefix("v"))
    if version is None:
        raise InvalidTarget(f"unknown MQTT protocol version {protocol!r} (use 3.1.1 or 5)")
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
    host = parts.hostname
    if not host:
        raise InvalidTarget(f"broker URL {shown!r} has no host")
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
