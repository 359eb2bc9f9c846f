"""A real headless browser for the tests: Debian's chromium, driven through the DevTools
protocol (CDP) over a websocket.

One chromium for the session (`chromium` fixture), started on a free loopback port with
a fresh profile in a temporary folder and stopped by its PID.  `Chromium.open(url,
width)` opens a new tab with the network blocked (every http, https and websocket URL),
records every request the page makes and every console error or uncaught exception,
and can read the DOM (`evaluate`) and take a full-page screenshot.  The browser's log
is attached to the output of a test that fails while using it.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.servers.common import free_port, stop_process, tail, wait_for_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]
BLOCKED = ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"]
_TIMEOUT = 120.0  # generous: the machine may be loaded


class CdpError(RuntimeError):
    pass


@dataclass
class Tab:
    """One page in the browser, attached through a flat CDP session."""

    browser: Chromium
    session: str
    target: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, tab=self)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        """A PNG of the whole page (not only the viewport), also written to `path`."""
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        shot = self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        data = base64.b64decode(shot["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})

    def on_event(self, message: dict[str, Any]) -> None:
        method, params = message["method"], message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console: " + json.dumps(params.get("args", []))[:500])
        elif method == "Runtime.exceptionThrown":
            self.errors.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append("log: " + params["entry"].get("text", "")[:500])
        elif method == "Network.loadingFailed":
            self.errors.append(f"request failed: {params.get('errorText')}")


@dataclass
class Chromium:
    """The browser process and its CDP connection (see the module docstring)."""

    process: subprocess.Popen[bytes]
    log: Path
    ws: ClientConnection
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _tabs: dict[str, Tab] = field(default_factory=dict)

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
        tab: Tab | None = None, timeout: float = _TIMEOUT,
    ) -> dict[str, Any]:  # fmt: skip
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"chromium did not answer {waiting_for} in time")
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=remaining))
        if "method" in message and message.get("sessionId") in self._tabs:
            self._tabs[message["sessionId"]].on_event(message)
        return message

    def wait_for(self, tab: Tab, event: str, timeout: float = _TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline, event)
            if message.get("method") == event and message.get("sessionId") == tab.session:
                return

    def open(self, url: str, width: int, height: int = 900) -> Tab:
        """A new tab `width` CSS pixels wide (a phone below 600) with the network blocked,
        `url` loaded."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        tab = Tab(self, session, target)
        self._tabs[session] = tab
        for domain in ("Page", "Runtime", "Log", "Network"):
            tab.send(f"{domain}.enable")
        tab.send("Network.setBlockedURLs", urls=BLOCKED)
        tab.send("Network.setCacheDisabled", cacheDisabled=True)
        tab.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                 deviceScaleFactor=1, mobile=width < 600)  # fmt: skip
        tab.send("Page.navigate", url=url)
        self.wait_for(tab, "Page.loadEventFired")
        return tab

    def log_tail(self) -> str:
        return tail(self.log)


def start_chromium(folder: Path) -> Chromium:
    port = free_port()
    log = folder / "chromium.log"
    profile = folder / "profile"
    profile.mkdir()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             "--remote-debugging-address=127.0.0.1", "about:blank"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_port(port, _TIMEOUT, process)  # type: ignore[arg-type]
        deadline = time.monotonic() + _TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/json/version", timeout=10
                ) as r:
                    url = json.loads(r.read())["webSocketDebuggerUrl"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        ws = connect(url, max_size=None, open_timeout=_TIMEOUT)
    except BaseException:
        stop_process(process)  # type: ignore[arg-type]
        raise
    return Chromium(process, log, ws)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """Debian's chromium, headless, for the whole session (see the module docstring)."""
    folder = Path(tempfile.mkdtemp(prefix="cmi-chromium-"))
    browser = start_chromium(folder)
    try:
        yield browser
    finally:
        try:
            browser.ws.close()
        finally:
            stop_process(browser.process)  # type: ignore[arg-type]
            shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test that fails while using the browser gets the browser's log in its output."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and "chromium" in getattr(item, "fixturenames", ()):
        browser = item.funcargs.get("chromium")  # type: ignore[attr-defined]
        if isinstance(browser, Chromium):
            report.sections.append(("chromium log", browser.log_tail()))
