"""Test helpers: a threaded HTTP server on 127.0.0.1 with scripted routes, and sample images.

    with LoopbackServer() as server:
        server.route("/a.jpg", static(jpeg_bytes(), "image/jpeg"))
        server.route("/flaky", sequence(static(b"", status=500), static(jpeg, "image/jpeg")))
        url = server.url("/a.jpg")

A route is a function of the request handler (`http.server.BaseHTTPRequestHandler`); the
helpers below build the usual ones; a path with a query falls back to the route without it.
`server.hits[path]` counts the requests per path (query included).
"""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

Route = Callable[[BaseHTTPRequestHandler], None]


class LoopbackServer:
    """An HTTP/1.1 keep-alive server on 127.0.0.1 (a free port) running in a thread."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.headers_seen: dict[str, dict[str, str]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path
                server.hits[path] += 1
                server.headers_seen[path] = dict(self.headers)
                route = server.routes.get(path) or server.routes.get(path.partition("?")[0])
                if route is None:
                    static(b"not found", "text/plain", status=404)(self)
                else:
                    route(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def route(self, path: str, handler: Route) -> str:
        """Serve `path` with `handler`; return its URL."""
        self.routes[path] = handler
        return self.url(path)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """The URL of `path` on this server (through `host`, which must resolve here)."""
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def static(
    body: bytes,
    content_type: str = "image/jpeg",
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Route:
    """Answer with a fixed status, headers and body (with Content-Length)."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    return handle


def timed(body: bytes, delay_s: float, finished: dict[str, float]) -> Route:
    """Answer with a JPEG after `delay_s`; record in `finished[path]` when it was sent in full
    (`time.monotonic()`)."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        time.sleep(delay_s)
        static(body)(h)
        h.wfile.flush()
        finished[h.path] = time.monotonic()

    return handle


def sequence(*routes: Route) -> Route:
    """Answer the n-th request with the n-th route (the last one repeats)."""
    counter = itertools.count()
    lock = threading.Lock()

    def handle(h: BaseHTTPRequestHandler) -> None:
        with lock:
            n = next(counter)
        routes[min(n, len(routes) - 1)](h)

    return handle


def redirect(location: str, status: int = 302) -> Route:
    """Redirect to `location`."""
    return static(b"", "text/plain", status=status, headers={"Location": location})


def unsized(body: bytes, content_type: str = "image/jpeg", chunk: int = 65536) -> Route:
    """Send `body` without Content-Length, ending it by closing the connection."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Connection", "close")
        h.end_headers()
        try:
            for start in range(0, len(body), chunk):
                h.wfile.write(body[start : start + chunk])
        except OSError:
            pass  # the client hung up, as it should on an over-size body

    return handle


def drip(body: bytes, pause_s: float, content_type: str = "image/jpeg") -> Route:
    """Send the headers and the first byte, then one byte every `pause_s` seconds."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            for i in range(len(body)):
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
                time.sleep(pause_s)
        except OSError:
            h.close_connection = True

    return handle


# Sample images ---------------------------------------------------------------------------


def encode(im: Image.Image, image_format: str, **params: object) -> bytes:
    """`im` encoded in `image_format`."""
    buffer = io.BytesIO()
    im.save(buffer, image_format, **params)
    return buffer.getvalue()


def jpeg_bytes(width: int = 64, height: int = 48, color: tuple = (200, 30, 30), **params) -> bytes:
    """A small RGB JPEG."""
    return encode(Image.new("RGB", (width, height), color), "JPEG", **params)


def noisy_jpeg(width: int = 120, height: int = 90, quality: int = 90) -> bytes:
    """An RGB JPEG of noise: little to compress, so truncating it cuts into the scan data."""
    noise = Image.merge("RGB", [Image.effect_noise((width, height), 64 + 16 * i) for i in range(3)])
    return encode(noise, "JPEG", quality=quality)


def png_bomb(width: int = 10_000, height: int = 10_000) -> bytes:
    """A 1-bit PNG of `width` x `height` pixels (100 MP by default) that is tiny on disk."""
    return encode(Image.new("1", (width, height)), "PNG", optimize=True)


def exif_rotated_jpeg(width: int = 60, height: int = 40) -> bytes:
    """A JPEG stored `width` x `height` whose EXIF orientation (6) turns it a quarter."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.new("RGB", (width, height), (0, 128, 255)), "JPEG", exif=exif)


def animated_gif(frames: int = 3, size: tuple[int, int] = (32, 32)) -> bytes:
    """An animated GIF of `frames` flat-coloured frames."""
    images = [Image.new("P", size, i * 40) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
