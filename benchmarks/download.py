"""Download benchmark: featuregen's downloader vs img2dataset on the same loopback URL list.

    python benchmarks/download.py [--n 2000] [--concurrency 64] [--rss-links 20000]

A uvloop HTTP/1.1 server in its own process serves N distinct JPEGs of 0.3-2 megapixels
(48 photo-like base images made unique per URL by a JPEG comment segment). Each contender
runs as a child process, one after the other, on the same URL list, with the same total
concurrency; CPU seconds come from the children's rusage, peak RSS from sampling the child's
whole process tree (img2dataset forks workers): the tree's sum and its largest process (what
`/usr/bin/time -v` reports). A plain keep-alive socket client first shows the server's own
rate. Besides the downloader alone, the download step as users run it: `featuregen run
--category dlbench --select raw_images` (Dagster's step machinery, the link file, the store's
rows) in a fresh home whose embedded PostgreSQL is started before the measurement (its server
processes are not counted). img2dataset must be installed in `.venv-img2dataset` (`pip
install img2dataset`); it runs with `--output_format files --resize_mode no --skip_reencode
True --compute_hash sha256`. Prints a markdown table with ratios (ours / img2dataset).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMG2DATASET = ROOT / ".venv-img2dataset" / "bin" / "img2dataset"
BASE_IMAGES = 48


def base_images(seed: int = 0) -> list[bytes]:
    """Photo-like JPEGs (smooth shading, shapes, sensor-like noise), 0.3-2 megapixels."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(BASE_IMAGES):
        pixels = 300_000 + (1_700_000 * i) // (BASE_IMAGES - 1)
        width = int((pixels * 4 / 3) ** 0.5)
        height = pixels // width
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        channels = []
        for _ in range(3):
            fx, fy, phase = rng.uniform(0.002, 0.02, 2).tolist() + [rng.uniform(0, 6)]
            channels.append(128 + 90 * np.sin(x * fx + phase) * np.cos(y * fy))
        rgb = np.stack(channels, axis=-1) + rng.normal(0, 9, (height, width, 3))
        buffer = io.BytesIO()
        Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=88)
        images.append(buffer.getvalue())
    return images


def unique_jpeg(images: list[bytes], index: int) -> bytes:
    """Base image `index % 48` with a comment segment naming `index` (distinct bytes/URL)."""
    base = images[index % len(images)]
    comment = b"featuregen benchmark %d" % index
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


# Server and plain client (child processes) -------------------------------------------------


def serve(port_file: Path) -> None:
    """Serve /img/<i>.jpg forever; write the port to `port_file` once listening."""
    import uvloop

    images = base_images()

    class Http(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""

        def data_received(self, data):
            self.buffer += data
            while b"\r\n\r\n" in self.buffer:
                head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
                method, path, version = head.split(b"\r\n", 1)[0].split(b" ")
                close = version == b"HTTP/1.0" or b"connection: close" in head.lower()
                try:
                    body = unique_jpeg(images, int(path.rsplit(b"/", 1)[1].split(b".")[0]))
                    status = b"200 OK"
                except ValueError:
                    body, status = b"not found", b"404 Not Found"
                self.transport.write(
                    b"HTTP/1.1 %s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n%s\r\n"
                    % (status, len(body), b"Connection: close\r\n" if close else b"")
                )
                self.transport.write(body)
                if close:
                    self.transport.close()
                    return

    async def main():
        server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0, backlog=1024)
        port_file.write_text(str(server.sockets[0].getsockname()[1]))
        await server.serve_forever()

    uvloop.run(main())


def plain_client(port: int, n: int, concurrency: int) -> None:
    """Fetch /img/0..n-1 over `concurrency` keep-alive connections, discarding the bodies."""
    import uvloop

    async def worker(indices):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in indices:
            writer.write(b"GET /img/%d.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % i)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    async def main():
        await asyncio.gather(*(worker(range(k, n, concurrency)) for k in range(concurrency)))

    started = time.perf_counter()
    uvloop.run(main())
    print(json.dumps({"ok": n, "seconds": time.perf_counter() - started}))


def ours(url_file: Path, out: Path, concurrency: int, full_decode: bool) -> None:
    """Run featuregen's downloader over the URL file; print counts and the in-run time."""
    sys.path.insert(0, str(ROOT))
    from featuregen_assets.core.ingest.download import DownloadSettings, download_links
    from featuregen_assets.core.ingest.image_store import ImageStore
    from featuregen_assets.core.ingest.links import Link, iter_lines

    settings = DownloadSettings(
        concurrency=concurrency,
        per_host=concurrency,  # one host here; the same total concurrency as img2dataset
        allowed_networks=("127.0.0.1/32",),
        full_decode=full_decode,
    )
    links = (item for item in iter_lines(url_file) if isinstance(item, Link))
    statuses: dict[str, int] = {}
    started = time.perf_counter()
    for result in download_links(links, ImageStore(out), settings):
        statuses[result.status] = statuses.get(result.status, 0) + 1
    seconds = time.perf_counter() - started
    print(json.dumps({"ok": statuses.get("ok", 0), "statuses": statuses, "seconds": seconds}))


# Measurement -------------------------------------------------------------------------------


def measure(command: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `command`; wall seconds, CPU seconds (whole tree), peak RSS (MB) of the tree's sum
    and of its largest process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = largest = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, largest
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                rss = [p.memory_info().rss for p in [root, *root.children(recursive=True)]]
                peak, largest = max(peak, sum(rss)), max(largest, *rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{stderr.decode()[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_mb": peak / 2**20,
        "largest_mb": largest / 2**20,
        "stdout": stdout.decode(),
        "stderr": stderr.decode(),
    }


def child(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def run_img2dataset(url_file: Path, out: Path, n: int, concurrency: int) -> dict:
    processes = min(2, os.cpu_count() or 1)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    stats = measure(
        [
            str(IMG2DATASET),
            f"--url_list={url_file}",
            "--input_format=txt",
            f"--output_folder={out}",
            "--output_format=files",
            "--resize_mode=no",
            "--skip_reencode=True",
            "--compute_hash=sha256",
            f"--processes_count={processes}",
            f"--thread_count={concurrency // processes}",
            f"--number_sample_per_shard={-(-n // processes)}",
            "--timeout=20",
            "--retries=0",
            "--enable_wandb=False",
            "--distributor=multiprocessing",
        ],
        env=env,
    )
    shards = [json.loads(Path(p).read_text()) for p in glob.glob(f"{out}/*_stats.json")]
    stats["ok"] = sum(s["successes"] for s in shards)
    stats["seconds"] = max(s["end_time"] for s in shards) - min(s["start_time"] for s in shards)
    return stats


def run_step(url_file: Path, work: Path, concurrency: int) -> dict:
    """`featuregen run --category dlbench --select raw_images` on the URL file, in a fresh home
    under `work`; its embedded PostgreSQL started before and stopped after the measurement."""
    links = work / "links"
    links.mkdir(parents=True)
    shutil.copy(url_file, links / "dlbench.txt")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "FEATUREGEN_HOME": str(work / "home"),
        "FEATUREGEN_LINKS_DIR": str(links),
        "FEATUREGEN_MODELS": "tiny",
        "FEATUREGEN_ALLOWED_NETWORKS": "127.0.0.1",
        "FEATUREGEN_DOWNLOAD_CONCURRENCY": str(concurrency),
        "FEATUREGEN_DOWNLOAD_PER_HOST": str(concurrency),
    }
    featuregen = [sys.executable, "-m", "featuregen_assets.cli"]
    subprocess.run([*featuregen, "db", "url"], env=env, check=True, capture_output=True)
    try:
        command = [*featuregen, "run", "--category", "dlbench", "--select", "raw_images"]
        stats = measure(command, env=env)
    finally:
        subprocess.run(
            [*featuregen, "db", "stop", "--force"], env=env, check=True, capture_output=True
        )
    # The step's last progress line (stderr): "raw_images: dlbench: D/N links, K ok, F failed,
    # R links/s"
    done, ok, rate = re.findall(
        r"(\d+)/\d+ links, (\d+) ok, \d+ failed, ([\d.]+) links/s", stats["stderr"]
    )[-1]
    stats.update(ok=int(ok), seconds=int(done) / float(rate))
    return stats


def row(name: str, stats: dict, n: int) -> dict:
    return {
        "name": name,
        "ok": stats["ok"],
        "ips_wall": n / stats["wall"],
        "ips_run": n / stats["seconds"],
        "cpu_per_img_ms": 1000 * stats["cpu"] / n,
        "rss_mb": stats["rss_mb"],
        "largest_mb": stats["largest_mb"],
    }


def print_table(rows: list[dict], baseline: dict | None) -> None:
    print(
        "| run | ok | images/s (process wall) | images/s (in-run) | CPU ms/image"
        " | peak RSS MB (tree / largest process) |"
        + (
            " ratio images/s (wall / in-run) | ratio CPU/image | ratio RSS (tree / largest) |"
            if baseline
            else ""
        )
    )
    print("|---|---|---|---|---|---|" + ("---|---|---|" if baseline else ""))
    for r in rows:
        line = (
            f"| {r['name']} | {r['ok']} | {r['ips_wall']:.0f} | {r['ips_run']:.0f} "
            f"| {r['cpu_per_img_ms']:.2f} | {r['rss_mb']:.0f} / {r['largest_mb']:.0f} |"
        )
        if baseline and r is not baseline:
            wall_ratio = r["ips_wall"] / baseline["ips_wall"]
            run_ratio = r["ips_run"] / baseline["ips_run"]
            line += (
                f" {wall_ratio:.2f} / {run_ratio:.2f}"
                f" | {r['cpu_per_img_ms'] / baseline['cpu_per_img_ms']:.2f}"
                f" | {r['rss_mb'] / baseline['rss_mb']:.2f}"
                f" / {r['largest_mb'] / baseline['largest_mb']:.2f} |"
            )
        elif baseline:
            line += " | | |"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rss-links", type=int, default=20_000, help="0 to skip the RSS run")
    parser.add_argument("--skip-img2dataset", action="store_true")
    parser.add_argument(
        "--skip-step", action="store_true", help="leave out `featuregen run ... raw_images`"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--plain", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ours", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--full-decode", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.plain:
        return plain_client(args.plain[0], args.plain[1], args.concurrency)
    if args.ours:
        return ours(args.ours[0], args.ours[1], args.concurrency, args.full_decode)

    work = Path(tempfile.mkdtemp(prefix="featuregen-bench-"))
    port_file = work / "port"
    server = subprocess.Popen(child("--serve", str(port_file)))
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        port = int(port_file.read_text())
        url_file = work / "urls.txt"
        url_file.write_text(
            "".join(f"http://127.0.0.1:{port}/img/{i}.jpg\n" for i in range(args.n))
        )
        sizes = [len(b) for b in base_images()]
        print(
            f"# {args.n} JPEGs, 0.3-2 MP, mean {np.mean(sizes) / 1e3:.0f} kB; "
            f"concurrency {args.concurrency}; {os.cpu_count()} CPUs"
        )

        def fresh(name: str) -> Path:
            path = work / name
            shutil.rmtree(path, ignore_errors=True)
            return path

        plain = measure(
            child("--plain", str(port), str(args.n), "--concurrency", str(args.concurrency))
        )
        plain.update(json.loads(plain["stdout"]))
        rows = [row("server + plain socket client (no processing)", plain, args.n)]
        conc = ["--concurrency", str(args.concurrency)]
        for name, extra in [
            ("featuregen (header + EOI check)", []),
            ("featuregen --full_decode", ["--full-decode"]),
        ]:
            stats = measure(child("--ours", str(url_file), str(fresh("ours")), *conc, *extra))
            stats.update(json.loads(stats["stdout"]))
            rows.append(row(name, stats, args.n))
        if not args.skip_step:
            stats = run_step(url_file, fresh("step"), args.concurrency)
            rows.append(row("`featuregen run --select raw_images` (whole process)", stats, args.n))
        baseline = None
        if not args.skip_img2dataset:
            stats = run_img2dataset(url_file, fresh("img2dataset"), args.n, args.concurrency)
            baseline = row("img2dataset (cv2 full decode)", stats, args.n)
            rows.append(baseline)
        print_table(rows, baseline)

        if args.rss_links:
            big = work / "urls-big.txt"
            big.write_text(
                "".join(f"http://127.0.0.1:{port}/img/{i}.jpg\n" for i in range(args.rss_links))
            )
            stats = measure(child("--ours", str(big), str(fresh("ours")), *conc))
            stats.update(json.loads(stats["stdout"]))
            print(
                f"\n{args.rss_links} links: ok {stats['ok']}, {args.rss_links / stats['wall']:.0f} "
                f"images/s, peak RSS {stats['rss_mb']:.0f} MB (limit 500 MB)"
            )
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
