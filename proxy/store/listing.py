"""Read-only views of the index for admins: entries under a prefix, one URL in detail.

Rule: reads go through the read connection (no write lock: listing a million-entry prefix
never stalls a commit) and are bounded by a limit; nothing here changes the cache.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from proxy.errors import StoreError
from proxy.policy import vary
from proxy.policy.bans import Ban, BanKind
from proxy.policy.freshness import Heuristic, StoredResponse, current_age, lifetime
from proxy.policy.headers import get
from proxy.store.index import Store, decode_meta
from proxy.store.retention import unheld

MAX_LIMIT = 1000
_PREFIX_END = "\U0010ffff"


def _rows(store: Store, sql: str, args: tuple[Any, ...]) -> list[Any]:
    try:
        with store._lock:
            return store._reader.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"index read failed: {exc}") from exc


def _describe(key: str, size: int, meta: StoredResponse, tags: list[str],
              heuristic: Heuristic, now: float) -> dict[str, Any]:
    age = current_age(meta, now)
    fresh_for = lifetime(meta.status, meta.headers, meta.response_time, heuristic) - age
    url_key, _, variant = key.partition(vary.SEP)
    return {
        "key": url_key,
        "variant": variant.replace("\x1e", "; ") or None,
        "size_bytes": size,
        "status": meta.status,
        "age_seconds": round(age, 3),
        "fresh_for_seconds": round(fresh_for, 3),
        "etag": get(meta.headers, "etag"),
        "last_modified": get(meta.headers, "last-modified"),
        "revision": get(meta.headers, "x-media-revision"),
        "tags": tags,
        "soft_purged": meta.invalidated,
    }


def _tags(store: Store, keys: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {k: [] for k in keys}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for tag, key in _rows(store, f"SELECT tag, key FROM MediaTags WHERE key IN ({marks})",
                              tuple(chunk)):
            found.setdefault(key, []).append(tag)
    return found


def entries(store: Store, prefix: str, limit: int, heuristic: Heuristic,
            now: float | None = None) -> dict[str, Any]:
    """Entries whose key starts with `prefix`, in key order (a range scan on the key index)."""
    now = time.time() if now is None else now
    limit = max(1, min(limit, MAX_LIMIT))
    rows = _rows(store, "SELECT key, size, value FROM Cache WHERE raw = 1 AND key >= ? AND "
                        "key < ? ORDER BY key LIMIT ?", (prefix, prefix + _PREFIX_END, limit + 1))
    tags = _tags(store, [r[0] for r in rows[:limit]])
    listed = []
    for key, size, value in rows[:limit]:
        try:
            meta = decode_meta(bytes(value))
        except (ValueError, KeyError, TypeError):
            continue
        listed.append(_describe(key, size, meta, tags.get(key, []), heuristic, now))
    return {"prefix": prefix, "limit": limit, "entries": listed, "truncated": len(rows) > limit}


def entry(store: Store, url_key: str, heuristic: Heuristic,
          now: float | None = None) -> dict[str, Any]:
    """Every stored variant of one URL: stored status and headers, state, whether a stream
    is reading its body now, and whether a fill for it is running."""
    now = time.time() if now is None else now
    rows = _rows(store, "SELECT key, size, value, filename FROM Cache WHERE raw = 1 AND "
                        "(key = ? OR (key > ? AND key < ?)) ORDER BY key LIMIT 100",
                 (url_key, url_key + vary.SEP, url_key + vary.SEP + _PREFIX_END))
    tags = _tags(store, [r[0] for r in rows])
    variants = []
    for key, size, value, filename in rows:
        try:
            meta = decode_meta(bytes(value))
        except (ValueError, KeyError, TypeError):
            continue
        described = _describe(key, size, meta, tags.get(key, []), heuristic, now)
        described["state"] = ("soft-purged" if meta.invalidated
                              else "fresh" if described["fresh_for_seconds"] > 0 else "stale")
        described["headers"] = [list(h) for h in meta.headers]
        held = unheld(os.path.join(str(store.directory), filename)) if filename else None
        described["being_read"] = held is False
        variants.append(described)
    fills = [f for f in store.claims.running_fills() if vary.base_key(str(f.get("key", "")))
             == url_key]
    return {"url": url_key, "variants": variants, "fills_in_progress": len(fills)}


def covers(store: Store, kind: BanKind, value: str) -> tuple[int, int]:
    """How many entries (every Vary variant counts) and body bytes a purge of `kind` `value`
    would take from this node now: the preview before a purge is confirmed."""
    if kind is BanKind.TAG:
        sql = ("SELECT COUNT(*), COALESCE(SUM(c.size), 0) FROM MediaTags t JOIN Cache c"
               " ON c.key = t.key AND c.raw = 1 WHERE t.tag = ?")
        args: tuple[Any, ...] = (value,)
    elif kind is BanKind.EXACT:
        sql = ("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM Cache WHERE raw = 1 AND"
               " (key = ? OR (key > ? AND key < ?))")
        args = (value, value + vary.SEP, value + vary.SEP + _PREFIX_END)
    else:  # a range scan on the key index, as the sweep does
        sql = ("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM Cache WHERE raw = 1 AND key >= ?"
               " AND key < ?")
        args = (value, value + _PREFIX_END)
    count, size = _rows(store, sql, args)[0]
    return int(count), int(size)


def ban_left(store: Store, ban: Ban) -> int | None:
    """Entries the ban's sweep has still to delete (or, soft, to mark stale) on this node;
    None once the ban is retired (swept, and no fill that predates it still running)."""
    if all(b.id != ban.id for b in store.bans().all):
        return None
    if ban.kind is BanKind.TAG:
        sql = ("SELECT COUNT(*) FROM MediaTags t JOIN Cache c ON c.key = t.key AND c.raw = 1"
               " WHERE t.tag = ? AND c.store_time <= ?")
        args: tuple[Any, ...] = (ban.value, ban.created)
    elif ban.kind is BanKind.EXACT:
        sql = ("SELECT COUNT(*) FROM Cache c WHERE (c.key = ? OR (c.key > ? AND c.key < ?))"
               " AND c.raw = 1 AND c.store_time <= ?")
        args = (ban.value, ban.value + vary.SEP, ban.value + vary.SEP + _PREFIX_END,
                ban.created)
    else:
        sql = ("SELECT COUNT(*) FROM Cache c WHERE c.key >= ? AND c.key < ? AND c.raw = 1"
               " AND c.store_time <= ?")
        args = (ban.value, ban.value + _PREFIX_END, ban.created)
    if ban.soft:  # as the sweep: rows already marked stale are done
        sql += " AND CAST(c.value AS TEXT) NOT LIKE '%\"invalidated\":true%'"
    return int(_rows(store, sql, args)[0][0])
