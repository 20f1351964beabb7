"""Offline bulk load of a mediaproxy cache directory (the purge test's 1,000,000 entries).

A fill through the proxy costs an origin request and a commit per entry (~1-2k/s). This
writes, while mediaproxy is stopped, what the same number of real fills leaves behind
(`Store.commit` -> `diskcache.Cache.set(key, Adopt(...))`, see proxy/store/):

- a `Cache` row per entry as `Cache.set` inserts it: the key as text with raw = 1,
  store_time = access_time = now, expire_time and tag NULL, access_count 0, size = body
  bytes, mode MODE_BINARY, `filename` the body's path, `value` the encoded metadata. An
  existing row is updated in place and its old body removed, as `set` does. diskcache's
  own triggers keep Settings `count` and `size`;
- a `MediaVary` row per URL with no names (`Store.commit` records the Vary of every fill);
  MediaTags rows of the key are dropped (the template carries no tags);
- the body under a random diskcache name (`ab/cd/<28 hex>.val`, as `Disk.filename`), 0644
  (a fill's claim lock file is removed when the fill ends, so none is written).

Each entry's metadata is an origin answer fetched once per URL prefix (`Template.fetch`, end
to end fields only, as the proxy stores them) with Date, request and response time set to
the load time, so that the entry is fresh and a later revalidation finds the same resource.
One SQLite connection writes the rows, one transaction per batch; worker processes create
the files of a batch meanwhile (the files are in place before the batch's rows commit).

Run: python -m bench.bulkload DIR --origin http://127.0.0.1:PORT --entries 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import http.client
import itertools
import json
import logging
import multiprocessing
import multiprocessing.pool
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from diskcache.core import MODE_BINARY

from proxy.policy.freshness import StoredResponse
from proxy.policy.headers import end_to_end
from proxy.store.index import Store, encode_meta

log = logging.getLogger(__name__)

BATCH = 50_000  # entries per transaction
CACHE_MIB = 512  # SQLite page cache of the loading connection
# Fields a template must not carry: they would need variant keys / MediaTags rows.
UNSUPPORTED_FIELDS = frozenset({"vary", "surrogate-key", "cache-tag"})


class LoadError(Exception):
    """The cache directory cannot be loaded, or is not what the load should have made."""


@dataclass(frozen=True)
class Template:
    """One origin answer as the proxy stores it: status, end-to-end fields in order, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def fetch(cls, origin_url: str, path: str) -> Template:
        """GET `path` from the origin itself (not through a cache)."""
        url = urllib.parse.urlsplit(origin_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            headers = tuple(end_to_end(resp.getheaders()))
        finally:
            conn.close()
        template = cls(resp.status, headers, body)
        template.check(path)
        return template

    def check(self, path: str) -> None:
        names = {k.lower(): v for k, v in self.headers}
        if self.status != 200 or "max-age" not in names.get("cache-control", ""):
            raise LoadError(f"{path}: origin answered {self.status} {names}: not cacheable")
        if names.get("content-length") != str(len(self.body)):
            raise LoadError(f"{path}: Content-Length {names.get('content-length')} but "
                            f"{len(self.body)} body bytes")
        if UNSUPPORTED_FIELDS & names.keys():
            raise LoadError(f"{path}: {sorted(UNSUPPORTED_FIELDS & names.keys())} unsupported")

    def meta(self, now: float) -> bytes:
        """The row's `value`: this answer, received at `now` (Date set to match)."""
        date = email.utils.formatdate(now, usegmt=True)
        headers = tuple((k, date if k.lower() == "date" else v) for k, v in self.headers)
        return encode_meta(StoredResponse(self.status, headers, now, now, len(self.body)))


@dataclass(frozen=True)
class LoadResult:
    entries: int  # rows written
    replaced: int  # of which replaced an existing row
    seconds: float  # wall time, files synced to disk

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0


Job = tuple[str, list[tuple[str, str, bytes]]]  # cache dir, [(filename, key, body)]


def _create(path: str, data: bytes, flags: int) -> None:
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _write_files(job: Job) -> int:
    """Worker: the body files (new names, never overwritten) of a job."""
    directory, entries = job
    for filename, _key, body in entries:
        _create(os.path.join(directory, filename), body, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    return len(entries)


def _filenames(count: int) -> list[str]:
    """`count` fresh body paths named like diskcache's Disk.filename (16 random bytes)."""
    hexes = os.urandom(16 * count).hex()
    return [f"{h[0:2]}/{h[2:4]}/{h[4:32]}.val"
            for h in (hexes[i:i + 32] for i in range(0, 32 * count, 32))]


_INSERT = ("INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count,"
           " tag, size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, ?, ?, ?, ?)")
_UPDATE = ("UPDATE Cache SET store_time = ?, expire_time = NULL, access_time = ?,"
           " access_count = 0, tag = NULL, size = ?, mode = ?, filename = ?, value = ?"
           " WHERE rowid = ?")


def bulk_load(
    directory: Path,
    entries: Iterable[tuple[str, Template]],
    *,
    max_size_bytes: int,
    workers: int | None = None,
    batch: int = BATCH,
) -> LoadResult:
    """Store every (cache key, template) in the cache at `directory`, which no process may
    be using. Creates the directory (and the store's schema) if needed."""
    start = time.monotonic()
    Store(directory, max_size_bytes=max_size_bytes).close()  # schema, settings, tmp/, locks/
    workers = workers or os.cpu_count() or 1
    written = replaced = 0
    with multiprocessing.get_context("fork").Pool(workers) as pool:  # before SQLite opens
        con = sqlite3.connect(directory / "cache.db", isolation_level=None)
        try:
            for pragma in ("busy_timeout = 5000", "synchronous = OFF",
                           f"cache_size = {-CACHE_MIB * 1024}", "temp_store = MEMORY"):
                con.execute(f"PRAGMA {pragma}")
            for chunk in _chunks(entries, batch):
                n, old = _load_batch(con, pool, str(directory), chunk, workers)
                written += n
                replaced += old
                log.debug("loaded %d entries", written)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
    os.sync()  # the bench measures afterwards: no writeback of the load during the test
    result = LoadResult(written, replaced, time.monotonic() - start)
    log.info("bulk-loaded %d entries (%d replaced) into %s in %.1f s (%.0f entries/s)",
             result.entries, result.replaced, directory, result.seconds, result.rate)
    return result


def _chunks(entries: Iterable[tuple[str, Template]],
            size: int) -> Iterator[list[tuple[str, Template]]]:
    it = iter(entries)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _load_batch(
    con: sqlite3.Connection,
    pool: multiprocessing.pool.Pool,
    directory: str,
    chunk: list[tuple[str, Template]],
    workers: int,
) -> tuple[int, int]:
    now = time.time()
    metas: dict[int, bytes] = {}
    for _, template in chunk:
        if id(template) not in metas:
            metas[id(template)] = template.meta(now)
    names = _filenames(len(chunk))
    files = [(name, key, t.body) for name, (key, t) in zip(names, chunk, strict=True)]
    pending = pool.map_async(_write_files, [(directory, files[i::workers])
                                            for i in range(workers)])
    keys = [key for key, _ in chunk]
    con.execute("BEGIN IMMEDIATE")
    try:
        existing: dict[str, tuple[int, str]] = {
            key: (rowid, filename) for key, rowid, filename in con.execute(
                "SELECT key, rowid, filename FROM Cache"
                " WHERE raw = 1 AND key IN (SELECT value FROM json_each(?))", (json.dumps(keys),))}
        inserts, updates = [], []
        for name, (key, template) in zip(names, chunk, strict=True):
            row = (len(template.body), MODE_BINARY, name, metas[id(template)])
            if key in existing:
                updates.append((now, now, *row, existing[key][0]))
            else:
                inserts.append((key, now, now, *row))
        con.executemany(_INSERT, inserts)
        con.executemany(_UPDATE, updates)
        con.executemany("INSERT OR REPLACE INTO MediaVary (key, names) VALUES (?, '')",
                        ((k,) for k in keys))
        if con.execute("SELECT 1 FROM MediaTags LIMIT 1").fetchone():
            con.executemany("DELETE FROM MediaTags WHERE key = ?", ((k,) for k in keys))
        pending.get()  # bodies in place before their rows are visible
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    for _, filename in existing.values():  # replaced: no reader offline, so unlinked at once
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, filename))
    return len(chunk), len(existing)


def check_store(
    directory: Path,
    expected_entries: int,
    samples: Sequence[tuple[str, Template]],
    *,
    max_size_bytes: int,
) -> None:
    """Open the directory as mediaproxy does and check the entry count, diskcache's
    bookkeeping and that each sample key looks up to its template's body."""
    store = Store(directory, max_size_bytes=max_size_bytes)
    try:
        count = store.entry_count()
        if count != expected_entries:
            raise LoadError(f"{directory}: {count} entries, expected {expected_entries}")
        settings = dict(store.cache._sql(
            "SELECT key, value FROM Settings WHERE key IN ('count', 'size')").fetchall())
        total = store.cache._sql("SELECT COALESCE(SUM(size), 0) FROM Cache").fetchone()[0]
        if settings != {"count": count, "size": total}:
            raise LoadError(f"Settings {settings} != count {count}, size {total}")
        if store.volume() > max_size_bytes:
            raise LoadError(f"{store.volume()} bytes exceed the {max_size_bytes} limit")
        for key, template in samples:
            found = store.lookup(key)
            if found is None:
                raise LoadError(f"lookup({key!r}) found nothing")
            try:
                body = found.file.read()
                fields = {k.lower(): v for k, v in found.meta.headers}
            finally:
                found.close()
            want = {k.lower(): v for k, v in template.headers}
            if body != template.body or fields.keys() != want.keys() or (
                    fields["cache-control"] != want["cache-control"]):
                raise LoadError(f"lookup({key!r}): {body!r} {fields} != {template}")
    finally:
        store.close()
    log.info("checked %s: %d entries, %d sample lookups ok", directory, count, len(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--origin", required=True, help="origin URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--prefix-entries", type=int, default=100_000,
                        help="keys 0..N-1 are /p/<i>, the rest /k/<i>")
    parser.add_argument("--max-size-bytes", type=int, default=4 << 30)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    p, k = Template.fetch(args.origin, "/p/0"), Template.fetch(args.origin, "/k/0")
    entries = ((f"/p/{i}", p) if i < args.prefix_entries else (f"/k/{i}", k)
               for i in range(args.entries))
    result = bulk_load(args.directory, entries, max_size_bytes=args.max_size_bytes,
                       workers=args.workers)
    print(json.dumps({"entries": result.entries, "replaced": result.replaced,
                      "seconds": round(result.seconds, 2), "rate": round(result.rate)}))


if __name__ == "__main__":
    main()
