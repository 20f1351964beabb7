"""Console pieces on their own: the purge preview and sweep progress against a real cache
directory, sessions and the sign-in throttle with an injected clock, and escaping."""

from __future__ import annotations

import os
import time
from pathlib import Path

from proxy.console.markup import Markup, escape, join, tag
from proxy.console.sessions import (
    IDLE_SECONDS,
    LOCKOUT_SECONDS,
    MAX_AGE_SECONDS,
    MAX_FAILURES,
    Sessions,
    Throttle,
    token_matches,
)
from proxy.policy.bans import BanKind
from proxy.policy.freshness import StoredResponse
from proxy.store import listing
from proxy.store.index import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def put(store: Store, key: str, size: int, tags: tuple[str, ...] = ()) -> None:
    temp = store.tmp_dir / f"{os.getpid()}.{abs(hash(key))}.part"
    temp.write_bytes(b"b" * size)
    meta = StoredResponse(200, (("ETag", '"1"'),), 0.0, time.time() - 10, size)
    assert store.commit(key, str(temp), meta, tags=tags)


def test_the_preview_counts_entries_and_bytes_a_purge_covers(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=1 << 30)
    try:
        put(store, "/p/a", 100, ("t1",))
        put(store, "/p/b\x1faccept=webp", 200)  # a Vary variant counts as an entry
        put(store, "/p/b\x1faccept=avif", 300, ("t1",))
        put(store, "/pq", 400)  # shares the characters, not the prefix
        put(store, "/other", 500)
        assert listing.covers(store, BanKind.PREFIX, "/p/") == (3, 600)
        assert listing.covers(store, BanKind.PREFIX, "/p") == (4, 1000)
        assert listing.covers(store, BanKind.PREFIX, "") == (5, 1500)  # everything
        assert listing.covers(store, BanKind.EXACT, "/p/b") == (2, 500)
        assert listing.covers(store, BanKind.TAG, "t1") == (2, 400)
        assert listing.covers(store, BanKind.PREFIX, "/none/") == (0, 0)
    finally:
        store.close()


def test_sweep_progress_counts_down_to_retired(tmp_path: Path) -> None:
    store = Store(tmp_path / "c", max_size_bytes=1 << 30)
    try:
        for i in range(3):
            put(store, f"/s/{i}", 10)
        put(store, "/keep", 10)
        hard = store.add_ban(BanKind.PREFIX, "/s/", soft=False, now=time.time())
        soft = store.add_ban(BanKind.PREFIX, "/keep", soft=True, now=time.time())
        assert listing.ban_left(store, hard) == 3
        assert listing.ban_left(store, soft) == 1
        assert store.sweep_ban(hard, batch=2) == 2
        assert listing.ban_left(store, hard) == 1
        store.sweep_ban(soft)
        assert listing.ban_left(store, soft) == 0  # marked stale: nothing left to do
        store.sweep_bans(min_ban_age_seconds=0)
        assert listing.ban_left(store, hard) is None  # retired
        assert listing.ban_left(store, soft) is None
    finally:
        store.close()


def test_sessions_expire_idle_and_old_and_with_a_new_admin_token() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    cookie, session = sessions.open("token-1")
    assert sessions.get(cookie, "token-1") is session
    assert sessions.get(cookie + "x", "token-1") is None
    assert sessions.get(cookie, "token-2") is None  # admin.token changed: signed out ...
    assert sessions.get(cookie, "token-1") is None  # ... for good
    cookie, _ = sessions.open("token-1")
    clock.now += IDLE_SECONDS - 1
    assert sessions.get(cookie, "token-1") is not None  # use restarts the idle timer
    clock.now += IDLE_SECONDS + 1
    assert sessions.get(cookie, "token-1") is None
    cookie, _ = sessions.open("token-1")
    for _ in range(int(MAX_AGE_SECONDS // (IDLE_SECONDS - 1)) + 1):
        clock.now += IDLE_SECONDS - 1
        sessions.get(cookie, "token-1")
    assert sessions.get(cookie, "token-1") is None  # kept busy, still ends
    cookie, session = sessions.open("token-1")
    other, _ = sessions.open("token-1")
    assert cookie != other and session.csrf_matches(session.csrf)
    assert not session.csrf_matches(session.csrf[:-1])
    sessions.close(cookie)
    assert sessions.get(cookie, "token-1") is None and sessions.get(other, "token-1")
    assert sessions.get(other, "") is None  # no token configured: no console


def test_the_throttle_locks_an_address_out_for_a_while() -> None:
    clock = Clock()
    throttle = Throttle(clock)
    for _ in range(MAX_FAILURES - 1):
        throttle.failed("10.0.0.1")
    assert throttle.locked_for("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.locked_for("10.0.0.1") == LOCKOUT_SECONDS
    assert throttle.locked_for("10.0.0.2") == 0  # per address
    clock.now += LOCKOUT_SECONDS
    assert throttle.locked_for("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    throttle.succeeded("10.0.0.1")  # a success forgets the failures
    for _ in range(MAX_FAILURES - 1):
        throttle.failed("10.0.0.1")
    assert throttle.locked_for("10.0.0.1") == 0


def test_token_comparison_and_escaping() -> None:
    assert token_matches("s3cret-token", "s3cret-token")
    assert not token_matches("s3cret-token", "s3cret-tokeN")
    assert not token_matches("", "")  # no token configured never matches
    assert escape('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    assert tag("<b>{v}</b>", v="<i>") == "<b>&lt;i&gt;</b>"
    assert tag("<b>{v}</b>", v=Markup("<i>")) == "<b><i></b>"
    assert join([Markup("<p>"), "<x>"]) == "<p>&lt;x&gt;"
    assert Markup("<p>") + "<x>" == "<p>&lt;x&gt;"
    assert escape(None) == ""
