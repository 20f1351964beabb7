"""Claims (flock per key) against a real directory: exclusive, visible to probes, and gone
from disk once released, so lock files do not pile up one per key ever filled."""

import os
from pathlib import Path

from proxy.store.claims import Claims


def test_claim_is_exclusive_probed_and_leaves_no_lock_file(tmp_path: Path) -> None:
    a, b = Claims(tmp_path), Claims(tmp_path)  # two processes' views of one cache dir
    claim = a.try_claim("/m/x.jpg")
    assert claim is not None and b.is_held("/m/x.jpg")
    assert b.try_claim("/m/x.jpg") is None
    claim.release()
    claim.release()  # idempotent
    assert not claim.paths.lock.exists() and not b.is_held("/m/x.jpg")
    again = b.try_claim("/m/x.jpg")
    assert again is not None and a.is_held("/m/x.jpg") and a.try_claim("/m/x.jpg") is None
    again.release()
    job = a.try_job("orphan-scan")
    assert job is not None and b.try_job("orphan-scan") is None
    job.release()
    assert not any(p.is_file() for p in (tmp_path / "locks").rglob("*"))


def test_a_lock_unlinked_between_open_and_flock_is_not_trusted(tmp_path: Path) -> None:
    # What a releasing holder does to a claimant that opened the old file just before.
    claims = Claims(tmp_path)
    first = claims.try_claim("/k")
    assert first is not None
    stale_fd = os.open(first.paths.lock, os.O_RDWR)
    first.release()  # unlinks the path, then drops the flock
    second = claims.try_claim("/k")  # a fresh file: not the orphan inode stale_fd names
    assert second is not None
    assert os.fstat(stale_fd).st_ino != os.stat(second.paths.lock).st_ino
    assert claims.try_claim("/k") is None
    os.close(stale_fd)
    second.release()
