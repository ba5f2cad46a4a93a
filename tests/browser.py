"""Headless Chromium for tests, driven through ChromeDriver's W3C WebDriver HTTP API.

``chromium_session(tmp)`` is a context manager yielding a ``Browser``: it finds Debian's
``chromium`` and ``chromedriver`` (installing both with ``apt-get`` as root when missing, as
``tests/postgres.py`` does for PostgreSQL), starts ChromeDriver on a free loopback port in its
own process group (``servers.running_server``, always stopped), and opens one headless
session with a fresh profile folder and the flags that keep Chromium off the network
(background networking, component updates, sync and QUIC off: on a closed network Chromium
otherwise hangs on its own connections).  ``Browser`` can open a page, run a script, read
the console (``console``) and take a full-page screenshot.

``BrowserUnavailable`` is raised, with the reason, only when Chromium cannot be found or
installed; tests turn it into a skip.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from servers import apt_install, running_server

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1366,900")
TIMEOUT = 60


class BrowserUnavailable(RuntimeError):
    """Chromium or ChromeDriver is not installed and cannot be installed here."""


def find_chromium() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` paths, or None."""
    browser = shutil.which("chromium") or (Path("/usr/bin/chromium").exists() and "/usr/bin/chromium") or None
    driver = shutil.which("chromedriver") or (Path("/usr/bin/chromedriver").exists() and "/usr/bin/chromedriver") or None
    return (browser, driver) if browser and driver else None


def install_chromium() -> tuple[str, str]:
    """Install Debian's ``chromium`` and ``chromium-driver`` with apt-get (root only); return their paths."""
    failed = apt_install(["chromium", "chromium-driver"], "Chromium")
    if failed:
        raise BrowserUnavailable(failed)
    found = find_chromium()
    if found is None:
        raise BrowserUnavailable("apt-get installed chromium but chromium or chromedriver was not found")
    return found


@dataclass
class Browser:
    """One WebDriver session of headless Chromium."""

    url: str
    session: str

    def _call(self, method: str, path: str, payload: dict | None = None):
        response = requests.request(method, f"{self.url}/session/{self.session}{path}", json=payload, timeout=TIMEOUT)
        body = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"WebDriver {method} {path}: {body.get('value')}")
        return body.get("value")

    def open(self, url: str) -> None:
        """Load ``url`` (waits for the page's load event)."""
        self._call("POST", "/url", {"url": url})

    def run(self, script: str, *args):
        """Run ``script`` (a function body: ``return ...``) in the page; return its JSON result."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def console(self) -> list[dict]:
        """The browser's console entries since the last call (level, message)."""
        return self._call("POST", "/se/log", {"type": "browser"}) or []

    def cdp(self, command: str, **params):
        """A Chrome DevTools Protocol command."""
        return self._call("POST", "/goog/cdp/execute", {"cmd": command, "params": params})

    def screenshot(self, path: Path) -> Path:
        """The whole page (not just the window) as a PNG."""
        size = self.cdp("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.cdp("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextlib.contextmanager
def chromium_session(tmp: Path) -> Iterator[Browser]:
    """A headless Chromium session (ChromeDriver on loopback), with a fresh profile under ``tmp``."""
    found = find_chromium() or install_chromium()
    browser, driver = found
    profile = tmp / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    command = [driver, "--port={port}", "--allowed-ips=127.0.0.1"]
    with running_server(command, log_path=tmp / "chromedriver.log", health="/status") as server:
        capabilities = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}}
        response = requests.post(f"{server.url}/session", json=capabilities, timeout=TIMEOUT)
        if response.status_code != 200:
            raise RuntimeError(f"ChromeDriver refused the session: {response.text[:500]}\n{server.log_tail()}")
        session = Browser(url=server.url, session=response.json()["value"]["sessionId"])
        try:
            yield session
        finally:
            with contextlib.suppress(requests.RequestException):
                requests.delete(f"{server.url}/session/{session.session}", timeout=TIMEOUT)
