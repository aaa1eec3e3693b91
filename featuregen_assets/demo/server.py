"""A loopback HTTP server for the offline demo: serves a directory, plus two kinds of broken link.

`/missing/*` answers 404; `/html/*` answers 200 with an HTML page labelled `image/jpeg`
(a login wall or error page behind an image URL). Everything else is a file under `root`.
HTTP/1.1 keep-alive, one thread per connection and `sendfile` for bodies keep it fast
enough for benchmarks that download hundreds of images.
"""

from __future__ import annotations

import threading
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

HTML_BODY = (
    b"<!doctype html><html><head><title>Sign in</title></head>"
    b"<body><p>Please sign in to view this image.</p></body></html>\n"
)


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # close idle keep-alive connections
    disable_nagle_algorithm = True  # headers then sendfile: no delayed-ACK stall

    def send_head(self) -> object | None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/missing/"):
            self.send_error(HTTPStatus.NOT_FOUND, "no such image")
            return None
        if path.startswith("/html/"):
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(HTML_BODY)))
            self.end_headers()
            return _Bytes(HTML_BODY)
        return super().send_head()

    def list_directory(self, path: str) -> None:
        self.send_error(HTTPStatus.NOT_FOUND, "no directory listings")
        return None

    def copyfile(self, source: object, outputfile: BinaryIO) -> None:
        if isinstance(source, _Bytes):
            outputfile.write(source.data)
        else:
            self.connection.sendfile(source)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Bytes:
    """An in-memory body that `SimpleHTTPRequestHandler.do_GET/do_HEAD` can close."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def close(self) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class DemoServer:
    """Serve `root` on `host` in a background thread (a context manager).

    `port` 0 takes a free port; a busy preferred port falls back to a free one.
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root)
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """`http://host:port`, the prefix of every served URL; only while started."""
        if self._server is None:
            raise RuntimeError("DemoServer is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> None:
        """Bind the port and start serving in a daemon thread."""
        if self._server is not None:
            return
        handler = partial(_Handler, directory=str(self.root))
        try:
            self._server = _Server((self.host, self.port), handler)
        except OSError:
            self._server = _Server((self.host, 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="featuregen-demo-server",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests and close the listening socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> DemoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
