"""Headless Chromium (Debian's ``chromium``) for the pages people look at.

``load`` opens a file the way a person would and returns its rendered DOM, what the page wrote
to the console and which network requests it made (from Chromium's own net log: requests the
page started, not the browser's background services); ``screenshot`` saves a PNG. Chromium
runs with every background service off, every host name resolving to nothing and a proxy on a
closed loopback port, so nothing leaves the machine even if a page tried. A missing chromium
skips the test with a reason, except in CI (``CI=true``), where it fails: like mosquitto.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

TIMEOUT = 60.0
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-first-run",
    "--no-default-browser-check", "--disable-domain-reliability", "--disable-breakpad",
    "--disable-client-side-phishing-detection", "--hide-scrollbars", "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
)
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)$")


def _chromium_missing() -> NoReturn:
    reason = "chromium is not installed (needed for the browser tests of the HTML report)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the browser tests", pytrace=False)
    pytest.skip(reason)


def chromium() -> str:
    """The chromium binary, or a skip (a failure in CI)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    _chromium_missing()


@dataclass(frozen=True)
class Page:
    dom: str  # the DOM after load (--dump-dom)
    console: tuple[str, ...]  # console messages, any level
    requests: tuple[str, ...]  # URLs the page asked the network for
    seconds: float  # wall time of the browser run, start to DOM dumped


def _run(args: list[str], workdir: Path) -> tuple[subprocess.CompletedProcess[bytes], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={workdir / 'profile'}", *args],
        capture_output=True, timeout=TIMEOUT, check=False)
    return proc, time.monotonic() - started


def load(html: Path, workdir: Path) -> Page:
    """Open ``html`` in headless Chromium; ``workdir`` holds its profile and net log."""
    netlog = workdir / "netlog.json"
    proc, seconds = _run(["--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}",
                          "--dump-dom", html.resolve().as_uri()], workdir)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    console = tuple(m.group(1) for line in proc.stderr.decode(errors="replace").splitlines()
                    if (m := _CONSOLE.search(line)))
    return Page(dom=proc.stdout.decode(), console=console, requests=_page_requests(netlog),
                seconds=seconds)


def _page_requests(netlog: Path) -> tuple[str, ...]:
    """URLs requested by the page (its requests carry the file:// page in their network
    isolation key; the browser's own services have none)."""
    data = json.loads(netlog.read_text())
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in data["events"]:
        params = event.get("params", {})
        if event["type"] == start and "file://" in str(params.get("network_isolation_key")):
            urls.append(params["url"])
    return tuple(urls)


def screenshot(html: Path, png: Path, workdir: Path, size: tuple[int, int] = (1100, 2400)
               ) -> None:
    """A PNG of ``html`` at ``size`` (width, height) CSS pixels."""
    proc, _ = _run([f"--window-size={size[0]},{size[1]}", f"--screenshot={png}",
                    html.resolve().as_uri()], workdir)
    assert proc.returncode == 0 and png.exists(), proc.stderr.decode(errors="replace")[-2000:]


def keep_artifact(path: Path) -> None:
    """Copy ``path`` to ``$AETHERDIAG_TEST_ARTIFACTS`` when set (CI sets it), so the
    screenshots survive the test run."""
    target = os.environ.get("AETHERDIAG_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
