"""A test HTTP server on 127.0.0.1: files with Range support, a request log, and the
misbehaviours remote reads must survive (no Range, redirects, ETag changes, latency,
short bodies, auth), plus the Hub's resolve and API routes.

Started and stopped by the tests (a context manager); threads, keep-alive (HTTP/1.1).
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Logged:
    path: str
    range: str | None
    status: int
    sent: int  # body bytes
    overlap: int = 0  # other requests in flight when this one arrived


@dataclass
class Settings:
    ranges: bool = True
    latency: float = 0.0
    redirect: str | None = None  # base URL every file request is redirected to (302)
    change_after: int | None = None  # the ETag changes after this many file requests
    short_by: int = 0  # send this many bytes fewer than announced, then close
    token: str | None = None  # require "Authorization: Bearer <token>" (else 401)
    forbidden: bool = False
    hub: bool = False  # serve /<org>/<repo>/resolve/<rev>/<path> and /api/models/<org>/<repo>/revision/<rev>
    etag: bool = True


class _Quiet(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops the SYNs of a burst of connections (a client
    # opening 32 at once), and each dropped one waits the kernel's 1 s retransmission: a cost
    # of this server, not of the client (a real server or CDN keeps hundreds).
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (a refused download, a timeout): not the test's output


@dataclass
class RangeServer:
    root: Path
    settings: Settings = field(default_factory=Settings)
    log: list[Logged] = field(default_factory=list)
    auth_seen: list[str | None] = field(default_factory=list)
    most_at_once: int = 0  # the most requests in flight together (concurrency, seen by the server)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._server = _Quiet(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, relative: str | Path) -> str:
        return f"{self.base}/{urllib.parse.quote(str(relative))}"

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    @property
    def requests(self) -> int:
        return len(self.log)

    @property
    def sent(self) -> int:
        return sum(e.sent for e in self.log)

    def reset(self) -> None:
        with self._lock:
            self.log.clear()
            self.most_at_once = 0


def _handler(server: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            if server.settings.hub:
                self.send_header("X-Repo-Commit", COMMIT)
                if status == 404:
                    self.send_header("X-Error-Code", "EntryNotFound")
            if getattr(self, "_head", False):
                self._head = False
                body = b""
            # logged before the headers go out: a client that has its answer may ask for the log at once
            server.record(Logged(self.path, self.headers.get("Range"), status, len(body), self.overlap))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with server._lock:
                server._in_flight += 1
                server.most_at_once = max(server.most_at_once, server._in_flight)
                self.overlap = server._in_flight - 1
            try:
                self._get()
            finally:
                with server._lock:
                    server._in_flight -= 1

        def do_HEAD(self) -> None:  # what huggingface_hub asks first (the benchmark's baseline)
            self._head = True
            self.do_GET()

        def _get(self) -> None:
            s = server.settings
            if s.latency:
                time.sleep(s.latency)
            server.auth_seen.append(self.headers.get("Authorization"))
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            if s.forbidden:
                return self._reply(403)
            if s.token is not None and self.headers.get("Authorization") != f"Bearer {s.token}":
                return self._reply(401)
            if s.hub:
                api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path)
                if api:
                    repo = server.root / api.group(1)
                    if not repo.is_dir():
                        return self._reply(404)
                    names = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
                    doc = {"id": api.group(1), "sha": COMMIT, "siblings": [{"rfilename": n} for n in names]}
                    return self._reply(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})
                resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if not resolve:
                    return self._reply(404)
                if resolve.group(2) not in ("main", COMMIT):
                    return self._reply(404)
                path = f"/{resolve.group(1)}/{resolve.group(3)}"
            if s.redirect:
                return self._reply(302, headers={"Location": s.redirect + urllib.parse.quote(path)})
            file = server.root / path.lstrip("/")
            if not file.is_file():
                return self._reply(404)
            self._file(file)

        def _file(self, file: Path) -> None:
            s = server.settings
            size = file.stat().st_size  # read only what is sent: files may be sparse and huge
            with server._lock:
                served = sum(1 for e in server.log if e.status in (200, 206))
            version = 1 if s.change_after is not None and served >= s.change_after else 0
            headers = {"Accept-Ranges": "bytes" if s.ranges else "none"}
            if s.etag:
                headers["ETag"] = f'"{size}-{version}"'
            headers["Last-Modified"] = email.utils.formatdate(1_700_000_000 + version, usegmt=True)
            wanted = self.headers.get("Range")
            if not s.ranges or not wanted:
                return self._reply(200, file.read_bytes(), headers)
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted)
            if not match:
                return self._reply(400)
            first, last = match.groups()
            if first == "":
                start, end = max(0, size - int(last)), size
            else:
                start, end = int(first), min(size, int(last) + 1) if last else size
            if start >= size:
                return self._reply(416, headers={"Content-Range": f"bytes */{size}"})
            with file.open("rb") as fh:
                fh.seek(start)
                body = fh.read(end - start)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            if s.short_by:
                self.send_response(206)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                server.record(Logged(self.path, wanted, 206, max(0, len(body) - s.short_by)))
                self.end_headers()
                self.wfile.write(body[: max(0, len(body) - s.short_by)])
                self.wfile.flush()
                self.close_connection = True
                return
            self._reply(206, body, headers)

    return Handler
