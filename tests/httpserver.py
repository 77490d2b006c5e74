"""A real HTTP server on 127.0.0.1 (an ephemeral port) for the download tests, that misbehaves on request.

    with FileServer({"/w/a.safetensors": data}) as server:
        server.mode = "cut"                      # see MODES
        url = server.url("/w/a.safetensors")
        ... server.requests                      # [Request(path, range, status), ...] in arrival order
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

MODES = {
    "normal": "200, or 206 for a Range request",
    "cut": "the first `bad` answers send the full Content-Length, then close after half the body",
    "ignore_range": "always 200 with the whole file",
    "fail500": "the first `bad` requests get 500, then normal",
    "corrupt": "the body has one byte flipped",
    "stall": "send the headers and a quarter of the body, then wait (past any client timeout)",
    "slow": "send the body in 8 pieces, `delay` seconds apart",
    "endless": "send the body, then zeros without end (until the client hangs up or `release`)",
    "silent": "accept the request and never answer (until `release`)",
    "trickle": "send the body 100 bytes at a time, `delay` seconds apart",
}


class Request(NamedTuple):
    path: str
    range: str | None
    status: int


class FileServer:
    def __init__(self, files: dict[str, bytes] | None = None):
        self.files = dict(files or {})  # URL path -> bytes; other paths answer 404
        self.mode = "normal"
        self.bad = 2  # how many bad answers "cut" and "fail500" give before behaving
        self.delay = 0.08  # "slow", "trickle": seconds between pieces
        self.length: int | None = None  # the Content-Length to announce instead of the true one
        self.send_length = True  # False: no Content-Length (the body ends when the connection closes)
        self.sent = 0  # body bytes written, over all requests
        self.endless_cap = 64 << 20  # "endless" stops after this many bytes all the same
        self.requests: list[Request] = []
        self._bad_given = 0
        self._lock = threading.Lock()
        self.release = threading.Event()  # ends every "stall"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.httpd.handle_error = lambda request, address: None  # clients that hang up are expected

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def take_bad(self) -> bool:
        """True while this mode still owes a bad answer."""
        with self._lock:
            if self._bad_given < self.bad:
                self._bad_given += 1
                return True
            return False

    def __enter__(self) -> FileServer:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv: FileServer = self.server.owner
        rng = self.headers.get("Range")

        def answer(status: int) -> None:
            srv.requests.append(Request(self.path, rng, status))
            if status >= 400:
                self.send_error(status)

        data = srv.files.get(self.path)
        if data is None:
            return answer(404)
        if srv.mode == "silent":
            srv.requests.append(Request(self.path, rng, 0))
            srv.release.wait(30)
            return None
        if srv.mode == "fail500" and srv.take_bad():
            return answer(500)
        if srv.mode == "corrupt":
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng and srv.mode != "ignore_range" else 0
        if start >= len(data) > 0:
            return answer(416)
        body = data[start:]
        answer(206 if start else 200)
        self.send_response(206 if start else 200)
        if srv.send_length:
            self.send_header("Content-Length", str(len(body) if srv.length is None else srv.length - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if srv.mode == "cut" and srv.take_bad():
            self.send(body[: len(body) // 2])  # then the connection closes (HTTP/1.0)
        elif srv.mode == "stall":
            self.send(body[: len(body) // 4])
            srv.release.wait(10)
        elif srv.mode in ("slow", "trickle"):
            step = -(-len(body) // 8) if srv.mode == "slow" else 100
            for i in range(0, len(body), step):
                self.send(body[i:i + step])
                time.sleep(srv.delay)
        elif srv.mode == "endless":
            self.send(body)
            zeros = bytes(1 << 16)
            while not srv.release.is_set() and srv.sent < srv.endless_cap:
                self.send(zeros)  # raises once the client hangs up
        else:
            self.send(body)

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        with self.server.owner._lock:
            self.server.owner.sent += len(data)
