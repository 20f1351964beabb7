"""Never serve a wrong byte: `kill -9` at random points while the proxy fills, commits, evicts
and purges, then check what survives.

Each scenario runs several trials against one origin and one cache directory. A trial starts
client load on fresh cache keys (a query string per trial: the origin ignores it, the cache
keys differ), kills a worker (or, with workers = 1, the single process) after a seeded random
delay, lets the supervisor replace it (or restarts the process itself on the same cache
directory), then checks:

  (a) every body a client received complete, during the load and afterwards, is exactly the
      origin's object (sha256 equal to the origin's X-Content-SHA256); cut responses are fine;
  (b) once the proxy is idle, tmp/ holds no *.part (and nothing but *.meta younger than 60 s);
  (c) the index and the disk agree: every `Cache` row has its body file of exactly its size,
      and every *.val body file is referenced by a row (an orphan may exist only transiently);
  (d) the proxy answers at once after the restart (bounded waits only, no timing asserts);
  (e) beyond the four above: the disk is healthy here, so no store error may be counted
      (`mediaproxy_store_errors_total`, `mediaproxy_fills_total{outcome="store_error"}`): a
      crash must not make the survivors or the restarted process break their own files.

Violations are collected over all trials and reported together at the end of each test.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.conftest import sha256
from tests.e2e.conftest import Running, start_proxy, stop, wait_ready
from tests.e2e.test_collapsing import fault
from tests.e2e.test_workers import put, worker_pids
from tests.faults.support import (
    ADMIN_EXTRA,
    PURGE_TOKEN,
    admin_json,
    body_problem,
    clear_origin_faults,
    http_get,
    metrics,
    open_part_writers,
    part_files,
    settled_snapshot,
    snapshot,
    tmp_leftovers,
    wait_for,
)

SEED = 20261122
ORPHAN_GRACE_SECONDS = 15.0  # after the last trial, how long orphans get to be cleaned up


def store_errors(admin_url: str) -> dict[str, float]:
    return {k: v for k, v in metrics(admin_url).items()
            if k.startswith("mediaproxy_store_errors_total")
            or (k.startswith("mediaproxy_fills_total") and 'outcome="store_error"' in k)}


SLOW = {"/slow/o20m.bin": 20_000_000, "/slow/o8m.bin": 8_000_000, "/slow/o3m.bin": 3_000_000}
FAST = {"/fast/o1m.bin": 1_000_000, "/fast/o300k.bin": 300_000, "/fast/o100k.bin": 100_000}


def small_objects(rng: random.Random, n: int = 40) -> dict[str, int]:
    return {f"/c/s{i:02d}.bin": rng.randint(10_000, 120_000) for i in range(n)}


@dataclass(frozen=True)
class Scenario:
    name: str
    workers: int
    trials: int
    paths: str  # "fills", "commits", "all"
    variants: int  # cache keys per path and trial
    clients: int
    kill_after: tuple[float, float]  # seconds after the load starts
    throttle: int | None  # origin bytes/s for /slow/ during the load
    cache_extra: str = ""
    purge: bool = False
    prefer_filler: bool = False  # kill the worker that has a temp body open for writing


EVICT = "max_size_bytes = 4194304\neviction_interval_seconds = 0.05\n"
ROOMY = "max_size_bytes = 268435456\neviction_interval_seconds = 0.2\n"

SCENARIOS = [  # 25 trials in all
    Scenario("fills", workers=2, trials=6, paths="fills", variants=1, clients=6,
             kill_after=(0.3, 2.0), throttle=8_000_000, cache_extra=ROOMY, prefer_filler=True),
    Scenario("commits", workers=2, trials=6, paths="commits", variants=3, clients=12,
             kill_after=(0.2, 1.5), throttle=None, cache_extra=ROOMY),
    Scenario("evict_purge", workers=2, trials=5, paths="all", variants=1, clients=8,
             kill_after=(0.2, 2.0), throttle=12_000_000, cache_extra=EVICT, purge=True),
    Scenario("single_fills_commits", workers=1, trials=4, paths="fills", variants=2,
             clients=8, kill_after=(0.3, 2.0), throttle=8_000_000, cache_extra=ROOMY),
    Scenario("single_evict_purge", workers=1, trials=4, paths="all", variants=1, clients=8,
             kill_after=(0.2, 2.0), throttle=12_000_000, cache_extra=EVICT, purge=True),
]


@dataclass
class Tally:
    """What the clients saw during one trial's load."""

    complete: int = 0
    cut: int = 0
    refused: int = 0
    purges: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class World:
    tmp_path: Path
    origin: Running
    scenario: Scenario
    proxy: Running
    bodies: dict[str, str]  # path -> sha256
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    orphans_seen: dict[str, int] = field(default_factory=dict)  # name -> trial first seen
    restarts: int = 0
    errors_read: dict[str, float] = field(default_factory=dict)  # last reading, this process

    def account_store_errors(self, trial: int, when: str) -> None:
        """(e) Store errors counted since the last reading of the same process."""
        now = store_errors(self.proxy.admin_url)
        for name, value in sorted(now.items()):
            if value > self.errors_read.get(name, 0.0):
                self.problems.append(
                    f"trial {trial}: (e) {name} rose by {value - self.errors_read.get(name, 0.0):g}"
                    f" ({when}) on a healthy disk")
        self.errors_read = now

    @property
    def cache_dir(self) -> Path:
        return self.tmp_path / "cache"

    def start(self) -> Running:
        s = self.scenario
        return start_proxy(self.tmp_path, self.origin.url, workers=s.workers,
                           name=f"proxy{self.restarts}", extra=ADMIN_EXTRA,
                           cache_extra=s.cache_extra)


def base_path(url: str) -> str:
    return url.split("?", 1)[0]


async def one_get(session: aiohttp.ClientSession, world: World, url: str, tally: Tally) -> None:
    expected = world.bodies[base_path(url)]
    try:
        async with session.get(world.proxy.url + url) as r:
            body = await r.read()
            declared = r.headers.get("X-Content-SHA256")
            if r.status != 200:
                tally.problems.append(f"load GET {url}: status {r.status} "
                                      f"(X-Cache {r.headers.get('X-Cache')}): {body[:200]!r}")
            elif sha256(body) != expected or declared != expected:
                tally.problems.append(
                    f"load GET {url}: WRONG BODY ({len(body)} bytes, sha256 "
                    f"{sha256(body)[:16]}, declared {str(declared)[:16]}, expected "
                    f"{expected[:16]}, X-Cache {r.headers.get('X-Cache')})")
            else:
                tally.complete += 1
    except aiohttp.ClientPayloadError:
        tally.cut += 1  # cut short: the client knows the body is incomplete
    except TimeoutError:  # before ClientConnectionError: ServerTimeoutError is both
        tally.problems.append(f"load GET {url}: no answer within the client timeout")
    except aiohttp.ClientConnectionError:
        tally.refused += 1  # the process died under this connection, or is restarting
        await asyncio.sleep(0.05)


async def client_loop(world: World, urls: list[str], rng: random.Random, stop_event:
                      asyncio.Event, tally: Tally) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # spread over workers
    timeout = aiohttp.ClientTimeout(total=60, sock_read=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while not stop_event.is_set():
            await one_get(session, world, rng.choice(urls), tally)


async def purge_loop(world: World, rng: random.Random, stop_event: asyncio.Event,
                     tally: Tally) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    headers = {"Authorization": f"Bearer {PURGE_TOKEN}"}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop_event.is_set():
            await asyncio.sleep(rng.uniform(0.1, 0.4))
            body = rng.choice([{"prefix": "/c/"}, {"prefix": "/slow/"}, {"prefix": "/fast/"},
                               {"all": True}, {"prefix": "/c/", "soft": True}])
            try:
                async with session.post(world.proxy.admin_url + "/purge", json=body,
                                        headers=headers) as r:
                    text = await r.text()
                    if r.status != 200:
                        tally.problems.append(f"purge {body}: {r.status} {text[:200]}")
                    else:
                        tally.purges += 1
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)  # single process: the admin listener died with it


def pick_victim(world: World, rng: random.Random) -> tuple[int, int]:
    """(pid to kill, how many temp bodies it was writing)."""
    if world.scenario.workers == 1:
        pid = world.proxy.proc.pid
        return pid, open_part_writers(pid, world.cache_dir)
    pids = sorted(worker_pids(world.proxy.proc.pid))
    writing = {pid: open_part_writers(pid, world.cache_dir) for pid in pids}
    if world.scenario.prefer_filler and any(writing.values()):
        pid = max(pids, key=lambda p: (writing[p], rng.random()))
    else:
        pid = rng.choice(pids)
    return pid, writing[pid]


def recover(world: World, victim: int) -> None:
    """Wait for the supervisor to replace the worker, or restart the single process."""
    if world.scenario.workers == 1:
        world.proxy.proc.wait(timeout=30)
        world.restarts += 1
        world.proxy = world.start()  # same cache dir; returns once /readyz says 200
        world.errors_read = {}  # a new process counts from zero
        return
    supervisor = world.proxy.proc.pid
    replaced = wait_for(lambda: len(worker_pids(supervisor)) == world.scenario.workers
                        and victim not in worker_pids(supervisor), timeout=30, interval=0.1)
    if not replaced:
        raise AssertionError(f"worker {victim} was not replaced within 30 s")
    wait_ready(world.proxy.admin_url + "/readyz", world.proxy.proc)


async def answers_at_once(world: World, urls: list[str], tally: Tally) -> None:
    """(d) Right after the restart, fresh connections are answered (in both workers)."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        probe = Tally()
        await asyncio.gather(*(one_get(session, world, url, probe) for url in urls))
    tally.problems.extend(probe.problems)
    if probe.complete != len(urls):
        tally.problems.append(
            f"(d) right after the restart only {probe.complete} of {len(urls)} requests were "
            f"answered completely ({probe.cut} cut, {probe.refused} refused)")


async def run_load(world: World, trial: int, urls: list[str], rng: random.Random) -> Tally:
    tally = Tally()
    stop_event = asyncio.Event()
    tasks = [asyncio.create_task(client_loop(world, urls, random.Random(rng.random()),
                                             stop_event, tally))
             for _ in range(world.scenario.clients)]
    if world.scenario.purge:
        tasks.append(asyncio.create_task(purge_loop(world, random.Random(rng.random()),
                                                    stop_event, tally)))
    delay = rng.uniform(*world.scenario.kill_after)
    try:
        await asyncio.sleep(delay)
        if world.scenario.workers == 1:  # its counters die with it: read them first
            await asyncio.to_thread(world.account_store_errors, trial, "before the kill")
        victim, writing = pick_victim(world, rng)
        os.kill(victim, signal.SIGKILL)
        world.notes.append(f"trial {trial}: kill -9 pid {victim} after {delay:.2f} s "
                           f"(writing {writing} temp bodies)")
        await asyncio.to_thread(recover, world, victim)
        await answers_at_once(world, rng.sample(urls, min(len(urls), 8)), tally)
        await asyncio.sleep(0.5)  # some load on the restarted process too
    finally:
        stop_event.set()
        await asyncio.gather(*tasks)
    return tally


async def verify(world: World, urls: list[str], fresh: int) -> list[str]:
    """(a) Fetch every URL, then the first `fresh` again (usually hits); compare the bytes."""
    problems: list[str] = []
    gate = asyncio.Semaphore(6)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def one(url: str) -> None:
            async with gate:
                tally = Tally()
                await one_get(session, world, url, tally)
                problems.extend(tally.problems)
                if tally.cut or tally.refused:
                    problems.append(f"after the restart GET {url} was "
                                    f"{'cut short' if tally.cut else 'refused'} while idle")
        for _ in range(2):
            await asyncio.gather(*(one(url) for url in urls))
            urls = urls[:fresh]  # the second round (mostly hits) on this trial's keys only
    return problems


def proxy_idle(world: World) -> bool:
    if part_files(world.cache_dir):
        return False
    status, stats = admin_json(world.proxy.admin_url + "/stats")
    return status == 200 and isinstance(stats, dict) and stats.get("fills_in_progress") == 0


def check_at_rest(world: World, trial: int) -> None:
    """(b) and (c), once nothing is filling."""
    if not wait_for(lambda: proxy_idle(world), timeout=30, interval=0.1):
        world.problems.append(f"trial {trial}: not idle 30 s after the load stopped: "
                              f"parts {part_files(world.cache_dir)}, "
                              f"stats {admin_json(world.proxy.admin_url + '/stats')[1]}")
    leftovers = tmp_leftovers(world.cache_dir)
    if leftovers:
        world.problems.append(f"trial {trial}: (b) leftovers in tmp/ of an idle proxy: "
                              f"{leftovers}")
    snap = settled_snapshot(world.cache_dir, known_orphans=frozenset(world.orphans_seen))
    for bad in snap.bad_rows:
        world.problems.append(f"trial {trial}: (c) index row without its body: {bad}")
    for name in snap.orphans:
        world.orphans_seen.setdefault(name, trial)


def trial_urls(world: World, paths: list[str], trial: int) -> list[str]:
    return [f"{p}?t={trial}&v={v}" for p in paths for v in range(world.scenario.variants)]


def publish_corpus(origin: Running, rng: random.Random, paths: dict[str, int]
                   ) -> dict[str, str]:
    shas = {}
    for path, size in paths.items():
        body = rng.randbytes(size)
        put(origin, path, body)
        shas[path] = sha256(body)
    return shas


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_kill9_at_random_points_never_serves_a_wrong_byte(
    tmp_path: Path, origin_process: Running, scenario: Scenario
) -> None:
    rng = random.Random(f"{SEED}-{scenario.name}")
    small = small_objects(rng)
    corpus = {"fills": {**SLOW, **FAST, **dict(list(small.items())[:8])},
              "commits": {**FAST, **small},
              "all": {**SLOW, **FAST, **small}}[scenario.paths]
    bodies = publish_corpus(origin_process, rng, corpus)
    world = World(tmp_path, origin_process, scenario, start_proxy(
        tmp_path, origin_process.url, workers=scenario.workers, name="proxy0",
        extra=ADMIN_EXTRA, cache_extra=scenario.cache_extra), bodies)
    paths = sorted(corpus)
    previous: list[str] = []
    started = time.monotonic()
    try:
        for trial in range(scenario.trials):
            if scenario.throttle:
                fault(origin_process, path_prefix="/slow/",
                      rate_bytes_per_second=scenario.throttle)
            urls = trial_urls(world, paths, trial)
            # Mostly fresh keys (fills, commits); some of the last trial's (hits, evictions).
            load_urls = urls * 4 + previous
            trial_started = time.monotonic()
            tally = asyncio.run(run_load(world, trial, load_urls, rng))
            world.notes.append(f"trial {trial}: {tally.complete} complete, {tally.cut} cut, "
                               f"{tally.refused} refused, {tally.purges} purges")
            world.problems.extend(f"trial {trial}: (a) {p}" for p in tally.problems)
            clear_origin_faults(origin_process.url)
            check_at_rest(world, trial)
            world.problems.extend(f"trial {trial}: (a) {p}"
                                  for p in asyncio.run(verify(world, urls + previous, len(urls))))
            world.account_store_errors(trial, "after the kill")
            world.notes.append(f"trial {trial}: {time.monotonic() - trial_started:.1f} s")
            previous = urls
        # Orphans must not outlive a short grace period once the proxy is idle.
        wait_for(lambda: not (set(world.orphans_seen) & set(snapshot(world.cache_dir).orphans)),
                 timeout=ORPHAN_GRACE_SECONDS, interval=0.5)
        final = settled_snapshot(world.cache_dir, known_orphans=frozenset(world.orphans_seen))
        for bad in final.bad_rows:
            world.problems.append(f"end: (c) index row without its body: {bad}")
        lasting = sorted(set(world.orphans_seen) & set(final.orphans))
        for name in lasting:
            path = world.cache_dir / name
            age = time.time() - path.stat().st_mtime if path.exists() else float("nan")
            world.problems.append(
                f"(c) orphan body file {name} ({final.files.get(name)} bytes, first seen after "
                f"trial {world.orphans_seen[name]}, mtime {age:.0f} s ago) is referenced by no "
                f"index row and was not removed")
        for name in sorted(set(final.orphans) - set(world.orphans_seen)):
            world.notes.append(f"end: orphan {name} appeared in the last checks (not judged)")
    finally:
        stop(world.proxy.proc)
        summary = {"scenario": scenario.name, "seconds": round(time.monotonic() - started, 1),
                   "notes": world.notes, "problems": world.problems}
        (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
    assert not world.problems, (
        f"{len(world.problems)} violations in {scenario.trials} kill -9 trials "
        f"({scenario.name}):\n" + "\n".join(world.problems[:40]))


# -- deterministic forms of what the random trials find ------------------------------------


def test_a_restarted_worker_leaves_the_other_workers_fill_alone(
    tmp_path: Path, origin_process: Running
) -> None:
    """(e) made deterministic: worker A is filling a throttled object when worker B is killed;
    the replacement of B starts (and sweeps tmp/) while A's fill runs. A's fill must still be
    committed, its client must get every byte, and no store error may be counted."""
    body = random.Random(SEED).randbytes(9_000_000)
    put(origin_process, "/slow/one.bin", body)
    fault(origin_process, path_prefix="/slow/", rate_bytes_per_second=1_500_000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, cache_extra=ROOMY)
    cache_dir = tmp_path / "cache"
    problems: list[str] = []
    try:
        async def scenario() -> None:
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async def download() -> bytes:
                    async with session.get(proxy.url + "/slow/one.bin") as r:
                        return await r.read()
                fill = asyncio.create_task(download())
                supervisor = proxy.proc.pid
                filling: list[int] = []
                def filling_started() -> bool:
                    filling.extend(p for p in worker_pids(supervisor)
                                   if open_part_writers(p, cache_dir))
                    return bool(filling)

                await asyncio.to_thread(wait_for, filling_started, 10)
                if not filling:
                    problems.append("no worker started filling /slow/one.bin")
                    return
                bystander = min(worker_pids(supervisor) - {filling[0]})
                os.kill(bystander, signal.SIGKILL)
                world = World(tmp_path, origin_process, SCENARIOS[0], proxy, {})
                await asyncio.to_thread(recover, world, bystander)
                try:
                    got = await fill
                except aiohttp.ClientPayloadError as exc:
                    problems.append(f"the fill's client (worker {filling[0]}, not killed) was "
                                    f"cut: {exc!r}")
                    return
                if sha256(got) != sha256(body):
                    problems.append(f"the fill's client got a WRONG BODY ({len(got)} bytes)")
        asyncio.run(scenario())
        clear_origin_faults(origin_process.url)
        wait_for(lambda: proxy_idle_at(proxy, cache_dir), timeout=20)
        answer = http_get(proxy.url + "/slow/one.bin")
        problem = body_problem("/slow/one.bin", answer, sha256(body))
        if problem:
            problems.append(problem)
        elif answer.x_cache != "HIT":
            problems.append(f"the fill that ran while the other worker restarted was not "
                            f"committed: the next GET is X-Cache {answer.x_cache}, not HIT")
        errors = {k: v for k, v in store_errors(proxy.admin_url).items() if v}
        if errors:
            problems.append(f"store errors counted on a healthy disk: {errors}")
    finally:
        stop(proxy.proc)
    assert not problems, "\n".join(problems)


def proxy_idle_at(proxy: Running, cache_dir: Path) -> bool:
    status, stats = admin_json(proxy.admin_url + "/stats")
    return not part_files(cache_dir) and status == 200 and isinstance(stats, dict) and (
        stats.get("fills_in_progress") == 0)


def test_orphan_body_file_left_by_a_crash_is_removed(
    tmp_path: Path, origin_process: Running
) -> None:
    """(c) made deterministic. A kill -9 between the rename of a finished temp file into the
    body tree (MediaDisk.store, which diskcache calls before its transaction) and the commit
    of the index row leaves a *.val that no row references. Such a file is planted here (an
    hour old, so any grace period is over) and the proxy must remove it while serving."""
    body = b"o" * 50_000
    put(origin_process, "/c/orphan.bin", body)
    proxy = start_proxy(tmp_path, origin_process.url, workers=1, cache_extra=ROOMY)
    cache_dir = tmp_path / "cache"
    try:
        assert http_get(proxy.url + "/c/orphan.bin").status == 200
    finally:
        assert stop(proxy.proc) == 0
    orphan = cache_dir / "fe" / "ed" / "0123456789abcdef0123456789ab.val"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x" * 123_456)
    an_hour_ago = time.time() - 3600
    os.utime(orphan, (an_hour_ago, an_hour_ago))
    assert str(orphan.relative_to(cache_dir)) in snapshot(cache_dir).orphans

    proxy = start_proxy(tmp_path, origin_process.url, workers=1, name="proxy-restarted",
                        cache_extra=ROOMY)
    try:
        answer = http_get(proxy.url + "/c/orphan.bin")  # (d) answers at once
        assert body_problem("/c/orphan.bin", answer, sha256(body)) is None
        removed = wait_for(lambda: not orphan.exists(), timeout=ORPHAN_GRACE_SECONDS,
                           interval=0.2)
    finally:
        stop(proxy.proc)
    assert removed, (
        f"orphan body file {orphan.relative_to(cache_dir)} (referenced by no index row, an "
        f"hour old) is still there {ORPHAN_GRACE_SECONDS:g} s after the restart: nothing "
        f"removes body files the index does not know")


def test_evicted_fill_while_its_first_client_stalls_is_not_a_500(
    tmp_path: Path, origin_process: Running
) -> None:
    """A 500 the evict/purge trials hit now and then, made deterministic. The first client of
    a fill stalls; the fill completes, is committed and evicted at once (8 MB in a 4 MiB
    budget). Later requests for the same key must be served from the origin again, not
    answered 500 (they must not join the finished, closed fill)."""
    body = random.Random(SEED).randbytes(8_000_000)
    put(origin_process, "/big/stall.bin", body)
    proxy = start_proxy(tmp_path, origin_process.url, workers=1, cache_extra=EVICT)
    problems: list[str] = []
    try:
        parts = urlsplit(proxy.url)
        assert parts.hostname is not None
        stalled = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        stalled.request("GET", "/big/stall.bin")
        first = stalled.getresponse()
        first.read(1000)  # then stall: the proxy keeps filling without this client
        wait_for(lambda: proxy_idle_at(proxy, tmp_path / "cache"), timeout=20)
        wait_for(lambda: not snapshot(tmp_path / "cache").rows, timeout=10)  # evicted
        for _ in range(3):
            answer = http_get(proxy.url + "/big/stall.bin")
            problem = body_problem("/big/stall.bin", answer, sha256(body))
            if problem:
                problems.append(f"while the first client stalls: {problem}")
        stalled.close()
    finally:
        stop(proxy.proc)
    assert not problems, "\n".join(problems)
