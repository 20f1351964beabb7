"""Hit ratio under a tight budget: Zipf-distributed requests over a catalogue 10x the budget.

Runs offline on loopback: the reference origin (`python -m origin serve`) and mediaproxy
(`python -m proxy serve`, 2 workers) as subprocesses; the same seeded request sequence is sent
to each checkout given, so two checkouts compare eviction policies:

    .venv/bin/python -m bench.eviction                       # this checkout
    .venv/bin/python -m bench.eviction --checkout /path/to/main --checkout .

Printed per checkout: hit ratio over all requests and over the second half (warm), bytes
from the origin, and the final disk use against the budget. The "ideal static" line is the
share of requests for the objects that fit at once (the best any policy can do in steady
state without knowing the future beyond popularity).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
TOKEN = "bench-eviction-token"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Workload:
    objects: int
    object_bytes: int
    budget_bytes: int
    requests: int
    zipf_s: float
    clients: int
    seed: int

    def sequence(self) -> list[int]:
        weights = [1.0 / (rank ** self.zipf_s) for rank in range(1, self.objects + 1)]
        rng = random.Random(self.seed)
        return rng.choices(range(self.objects), weights=weights, k=self.requests)

    def ideal_static(self) -> float:
        weights = [1.0 / (rank ** self.zipf_s) for rank in range(1, self.objects + 1)]
        fit = self.budget_bytes // self.object_bytes
        return sum(weights[:fit]) / sum(weights)


def publish(origin_url: str, load: Workload) -> None:
    for i in range(load.objects):
        data = (i.to_bytes(4, "big") * (load.object_bytes // 4))[: load.object_bytes]
        request = urllib.request.Request(
            f"{origin_url}/zipf/{i}.bin", data=data, method="PUT",
            headers={"Authorization": f"Bearer {TOKEN}",
                     "X-Media-Cache-Control": "max-age=86400"})
        with urllib.request.urlopen(request, timeout=30) as r:
            r.read()


def get(port: int, path: str) -> tuple[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        size = len(response.read())
        return response.getheader("X-Cache", ""), size
    finally:
        conn.close()


@dataclass
class Result:
    checkout: str
    hit_ratio: float
    warm_hit_ratio: float
    origin_mib: float
    disk: object
    seconds: float


def run(checkout: Path, origin_url: str, load: Workload, work: Path) -> Result:
    port, admin = free_port(), free_port()
    config = work / "proxy.toml"
    cache_dir = work / "cache"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{admin}"\n'
        f'workers = 2\n[origin]\nurl = "{origin_url}"\n'
        f'[cache]\ndir = "{cache_dir}"\nmax_size_bytes = {load.budget_bytes}\n'
        'memory_bytes = 0\n[log]\nlevel = "warning"\naccess_log = false\n')
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(checkout))
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--config", str(config)],
                            cwd=checkout, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{admin}/readyz", proc)
        sequence = load.sequence()
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(load.clients) as pool:
            answers = list(pool.map(lambda i: get(port, f"/zipf/{i}.bin"), sequence))
        seconds = time.monotonic() - started
        bad = [size for _, size in answers if size != load.object_bytes]
        if bad:
            raise SystemExit(f"{checkout}: {len(bad)} answers of the wrong size")
        hits = [status == "HIT" for status, _ in answers]
        warm = hits[len(hits) // 2:]
        misses = len(hits) - sum(hits)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=10) as r:
            stats = json.loads(r.read())
        disk = stats.get("disk", {"bytes (index + bodies)": stats.get("bytes")})
        return Result(str(checkout), sum(hits) / len(hits), sum(warm) / len(warm),
                      misses * load.object_bytes / MIB, disk, seconds)
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", type=Path,
                        help="a checkout whose proxy to run (repeat to compare); default: this")
    parser.add_argument("--budget-mib", type=int, default=16)
    parser.add_argument("--object-kib", type=int, default=1024)
    parser.add_argument("--ratio", type=int, default=10, help="catalogue size / budget")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--zipf-s", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    budget = args.budget_mib * MIB
    object_bytes = args.object_kib * 1024
    load = Workload(objects=budget * args.ratio // object_bytes, object_bytes=object_bytes,
                    budget_bytes=budget, requests=args.requests, zipf_s=args.zipf_s,
                    clients=args.clients, seed=args.seed)
    checkouts = args.checkout or [HERE]
    print(f"workload: {load.objects} objects of {args.object_kib} KiB "
          f"({load.objects * object_bytes / MIB:.0f} MiB, {args.ratio}x the "
          f"{args.budget_mib} MiB budget), {load.requests} requests, Zipf s={load.zipf_s}, "
          f"{load.clients} clients, 2 workers, seed {load.seed}")
    print(f"ideal static hit ratio (the {budget // object_bytes} most popular cached): "
          f"{load.ideal_static():.3f}")
    with tempfile.TemporaryDirectory(prefix="bench-eviction-") as tmp:
        origin_port = free_port()
        origin_url = f"http://127.0.0.1:{origin_port}"
        origin = subprocess.Popen(
            [sys.executable, "-m", "origin", "serve", "--db", f"{tmp}/origin.sqlite3",
             "--host", "127.0.0.1", "--port", str(origin_port), "--admin-token", TOKEN],
            cwd=HERE, stderr=subprocess.DEVNULL)
        try:
            wait_http(origin_url + "/_origin/stats", origin)
            publish(origin_url, load)
            for n, checkout in enumerate(checkouts):
                work = Path(tmp, f"run{n}")
                work.mkdir()
                r = run(checkout.resolve(), origin_url, load, work)
                print(f"{r.checkout}: hit ratio {r.hit_ratio:.3f} (second half "
                      f"{r.warm_hit_ratio:.3f}), {r.origin_mib:.0f} MiB from the origin, "
                      f"{r.seconds:.1f} s; disk at the end: {r.disk}")
        finally:
            stop(origin)


if __name__ == "__main__":
    main()
