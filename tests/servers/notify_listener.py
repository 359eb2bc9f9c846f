"""A loopback HTTP listener that records what notifications deliver (Apprise `json://`).

It answers every POST with 200 and keeps the decoded JSON bodies; `url` is the Apprise URL
that sends to it.  Started in a thread of the test process on a free port, stopped at the
end of the test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.servers.common import free_port


@dataclass
class Listener:
    port: int
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)


def start_listener() -> tuple[Listener, ThreadingHTTPServer]:
    listener = Listener(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            listener.received.append({"path": self.path, **json.loads(body or b"{}")})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", listener.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return listener, server


@pytest.fixture
def notify_listener() -> Iterator[Listener]:
    listener, server = start_listener()
    try:
        yield listener
    finally:
        server.shutdown()
        server.server_close()
