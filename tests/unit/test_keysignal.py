"""Per-key change signals (proxy/store/keysignal.py): shared by every process mapping the file."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from proxy.errors import StoreError
from proxy.store.index import Store
from proxy.store.keysignal import SIGNAL_FILE, SLOTS, KeySignal, SignalUnusable, reset, slot_of


def test_a_bump_is_seen_by_every_mapping_of_the_file(tmp_path: Path) -> None:
    writer, reader = KeySignal(tmp_path / "k"), KeySignal(tmp_path / "k")
    assert writer.available and reader.available
    slot = slot_of("/media/a.jpg")
    before = reader.read(slot)
    writer.bump("/media/a.jpg")
    assert reader.read(slot) != before
    other = (slot + 1) % SLOTS
    assert reader.read(other) == 0  # other slots untouched
    writer.close()
    reader.close()


def test_slots_do_not_depend_on_the_process_hash_seed() -> None:
    # crc32, not hash(): every worker process must find a key in the same slot.
    assert slot_of("/media/a.jpg") == zlib.crc32(b"/media/a.jpg") & (SLOTS - 1)
    assert 0 <= slot_of("/x\udcff") < SLOTS  # surrogate-escaped keys have a slot too


def test_without_the_file_nothing_is_signalled(tmp_path: Path) -> None:
    signal = KeySignal(tmp_path / "missing-dir" / "k")  # cannot be created
    assert not signal.available and signal.read(5) == 0
    signal.bump("/a")  # a no-op, never an error


def test_the_file_is_allocated_not_sparse(tmp_path: Path) -> None:
    """A store into a sparse page a full filesystem cannot back would be a SIGBUS."""
    KeySignal(tmp_path / "k").close()
    assert os.stat(tmp_path / "k").st_blocks * 512 >= SLOTS * 8


def test_a_file_made_without_room_means_no_signals_for_every_process(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"")  # what a start on a full disk leaves
    first, second = KeySignal(tmp_path / "k"), KeySignal(tmp_path / "k")
    assert not first.available and not second.available  # all agree: copies live by TTL
    reset(tmp_path / "k")  # at the next start, before any worker
    assert KeySignal(tmp_path / "k").available


def test_reset_keeps_a_whole_file(tmp_path: Path) -> None:
    writer = KeySignal(tmp_path / "k")
    writer.bump("/a")
    value = writer.read(slot_of("/a"))
    reset(tmp_path / "k")
    assert KeySignal(tmp_path / "k").read(slot_of("/a")) == value


def test_a_process_that_cannot_map_the_file_does_not_use_the_store(tmp_path: Path) -> None:
    """Writing without signalling while the others rely on signals would keep old copies
    alive in them: such a process runs without a store (every request to the origin)."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / SIGNAL_FILE).mkdir()  # unopenable as a file
    with pytest.raises(SignalUnusable):
        KeySignal(tmp_path / "cache" / SIGNAL_FILE)
    with pytest.raises(StoreError, match="key change signals"):
        Store(tmp_path / "cache", max_size_bytes=1 << 30)
