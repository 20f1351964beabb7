"""Per-key change signals (proxy/store/keysignal.py): shared by every process mapping the file."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from proxy.store.keysignal import SLOTS, KeySignal, slot_of


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
