"""Image conversion benchmark: mediaproxy's engine against thumbor (and nginx image_filter).

    make bench-images            # or: .venv/bin/python -m bench.images [--images 24 ...]

Cold conversions only, for now: the request path that caches conversions is being wired, so
mediaproxy's side calls the engine directly (`ConversionPool.convert`, no HTTP), which favours
it by the cost of an HTTP exchange; thumbor is measured over HTTP on loopback with result
storage and storage off (every request is a conversion) and ALLOW_UNSAFE_URL (no signing) for
the benchmark. nginx image_filter is measured when its Debian module is installed
(`libnginx-mod-http-image-filter`), with image_filter_buffer raised to 16M. Same corpus,
same box (cover crop to WxH, JPEG), same concurrency; peak RSS of each server's process tree,
and for mediaproxy of its conversion processes only (a proxy worker's own RSS comes on top;
the tree including this benchmark process, which holds the corpus and pyvips, is printed
too). Figures are printed, with ratios to thumbor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.proctree import RssSampler, rss_bytes

ROOT = Path(__file__).resolve().parents[1]
THUMBOR_VENV = ROOT / "var" / "bench" / "thumbor-venv"


def corpus(directory: Path, count: int, width: int, height: int) -> list[Path]:
    """`count` distinct photo-like JPEGs (the seed's photo generator, shifted per image)."""
    import pyvips

    from origin.seed import photo_rows

    base = pyvips.Image.new_from_memory(b"".join(photo_rows(width, height)), width, height, 3,
                                        "uchar").copy(interpretation="srgb")
    paths = []
    for index in range(count):
        image = base.embed(index * 37 % width, 0, width, height, extend="repeat")
        path = directory / f"img{index:03d}.jpg"
        image.write_to_file(str(path), Q=85)
        paths.append(path)
    return paths


def summary(name: str, latencies: list[float], seconds: float, rss: int) -> dict[str, float]:
    ordered = sorted(latencies)
    result = {"rate": len(ordered) / seconds, "p50": statistics.median(ordered) * 1000,
              "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
              "rss": rss / 2**20}
    print(f"  {name:<28} {result['rate']:8.1f} conv/s   p50 {result['p50']:7.1f} ms   "
          f"p99 {result['p99']:7.1f} ms   peak RSS {result['rss']:7.1f} MiB", flush=True)
    return result


async def run_engine(paths: list[Path], requests: int, concurrency: int, box: int,
                     workers: int) -> dict[str, float]:
    from proxy.imageconfig import ImagesConfig
    from proxy.images.pool import ConversionPool
    from proxy.images.spec import Spec

    config = ImagesConfig(pool_workers=workers, timeout_seconds=60)
    sources = [p.read_bytes() for p in paths]
    latencies: list[float] = []
    async with ConversionPool(config) as pool:
        await pool.convert(sources[0], Spec(box, box, "cover", "jpeg", 80))  # processes warm
        queue = list(range(requests))

        async def client() -> None:
            while queue:
                index = queue.pop()
                started = time.perf_counter()
                # A distinct box per request, as the thumbor run asks distinct URLs.
                await pool.convert(sources[index % len(sources)],
                                   Spec(box + index % 7, box, "cover", "jpeg", 80))
                latencies.append(time.perf_counter() - started)

        peak = 0

        async def sample_pool() -> None:
            # The conversion processes only: this benchmark process holds the corpus, its
            # client and pyvips (for the corpus), which a proxy worker does not.
            nonlocal peak
            while True:
                peak = max(peak, sum(rss_bytes(pid) or 0 for pid in pool.pids()))
                await asyncio.sleep(0.05)

        sampling = asyncio.ensure_future(sample_pool())
        with RssSampler(os.getpid()) as sampler:
            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        sampling.cancel()
        print(f"  (peak RSS with this benchmark process: "
              f"{sampler.stop().tree_bytes / 2**20:.1f} MiB)")
        return summary(f"mediaproxy engine ({workers} proc)", latencies, elapsed, peak)


async def run_http(name: str, urls: list[str], concurrency: int, pid: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = list(urls)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async with session.get(urls[0]) as warm:
            body = await warm.read()
            if warm.status != 200 or not body.startswith(b"\xff\xd8"):
                raise RuntimeError(f"{name}: {warm.status} for {urls[0]}: {body[:200]!r}")

        async def client() -> None:
            while queue:
                url = queue.pop()
                started = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{name}: {response.status} for {url}")
                latencies.append(time.perf_counter() - started)

        with RssSampler(pid) as sampler:
            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
    return summary(name, latencies, elapsed, sampler.stop().tree_bytes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def thumbor_bin() -> Path | None:
    binary = THUMBOR_VENV / "bin" / "thumbor"
    if not binary.exists():
        print("  installing thumbor into var/bench/thumbor-venv (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True)
        done = subprocess.run([str(THUMBOR_VENV / "bin" / "pip"), "install", "--quiet",
                               "thumbor"], check=False)
        if done.returncode != 0:
            return None
    return binary


async def run_thumbor(directory: Path, paths: list[Path], requests: int, concurrency: int,
                      box: int, processes: int) -> dict[str, float] | None:
    binary = thumbor_bin()
    if binary is None:
        print("  thumbor: skipped (pip install thumbor failed)")
        return None
    conf = directory / "thumbor.conf"
    conf.write_text(
        f"LOADER = 'thumbor.loaders.file_loader'\nFILE_LOADER_ROOT_PATH = '{directory}'\n"
        "STORAGE = 'thumbor.storages.no_storage'\nRESULT_STORAGE = None\n"
        "ALLOW_UNSAFE_URL = True\nQUALITY = 80\nAUTO_WEBP = False\n"
        "RESPECT_ORIENTATION = True\n")
    port = free_port()
    proc = subprocess.Popen([str(binary), "-p", str(port), "-c", str(conf), "-l", "error",
                             "--processes", str(processes)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        urls = [f"http://127.0.0.1:{port}/unsafe/{box + i % 7}x{box}/"
                f"{paths[i % len(paths)].name}" for i in range(requests)]
        return await run_http(f"thumbor ({processes} proc)", urls, concurrency, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


async def run_nginx(directory: Path, paths: list[Path], requests: int, concurrency: int,
                    box: int) -> dict[str, float] | None:
    module = Path("/usr/lib/nginx/modules/ngx_http_image_filter_module.so")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not module.exists() or not Path(nginx).exists():
        print("  nginx image_filter: skipped (apt-get install nginx "
              "libnginx-mod-http-image-filter)")
        return None
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(
        f"load_module {module};\nworker_processes 2;\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/nginx.err;\nevents {{}}\nhttp {{\n access_log off;\n"
        f" server {{\n  listen 127.0.0.1:{port};\n  root {directory};\n"
        "  location ~ ^/(\\d+)/(.+)$ {\n   alias " + str(directory) + "/$2;\n"
        f"   image_filter crop $1 {box};\n   image_filter_jpeg_quality 80;\n"
        "   image_filter_buffer 16M;\n  }\n }\n}\n")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        urls = [f"http://127.0.0.1:{port}/{box + i % 7}/{paths[i % len(paths)].name}"
                for i in range(requests)]
        return await run_http("nginx image_filter (2 proc)", urls, concurrency, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def ratio(value: dict[str, float], base: dict[str, float] | None) -> str:
    if base is None:
        return "n/a"
    return (f"{value['rate'] / base['rate']:.2f}x conv/s, "
            f"{value['rss'] / base['rss']:.2f}x peak RSS")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", default="1920x1280", help="source WxH")
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--box", type=int, default=320, help="cover box (px)")
    parser.add_argument("--processes", type=int, default=2, help="conversion processes")
    parser.add_argument("--skip-thumbor", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        directory = Path(tmp)
        paths = corpus(directory, args.images, width, height)
        mean = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        print(f"corpus: {len(paths)} JPEGs {args.size} ({mean:.0f} KiB mean); "
              f"{args.requests} cold conversions to {args.box}x{args.box} cover JPEG q80, "
              f"concurrency {args.concurrency}, {os.cpu_count()} CPUs", flush=True)
        engine = await run_engine(paths, args.requests, args.concurrency, args.box,
                                  args.processes)
        thumbor = None if args.skip_thumbor else await run_thumbor(
            directory, paths, args.requests, args.concurrency, args.box, args.processes)
        nginx = await run_nginx(directory, paths, args.requests, args.concurrency, args.box)
    print(f"mediaproxy engine vs thumbor: {ratio(engine, thumbor)} "
          "(target: >= 2x conv/s at <= 0.5x RSS)")
    if nginx is not None:
        print(f"mediaproxy engine vs nginx image_filter: {ratio(engine, nginx)}")
    print("warm (cached) conversions, the herd test (50 -> 1 fetch, 1 conversion) and HTTP "
          "figures for mediaproxy need the request path (not wired yet)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
