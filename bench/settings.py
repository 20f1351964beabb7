"""Paths and run settings (from BENCH_* environment variables)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
WORK_DIR = BENCH_DIR / "work"
RESULTS_DIR = BENCH_DIR / "results"
PIDS_DIR = WORK_DIR / "pids"

SERVER_NAMES: tuple[str, ...] = ("nginx", "varnish", "mediaproxy")


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise SystemExit(f"{name}={value} must be >= {minimum}")
    return value


def _env_float(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not a number") from exc
    if value < minimum:
        raise SystemExit(f"{name}={value} must be >= {minimum}")
    return value


def _env_flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SystemExit(f"{name}={raw!r}: use 1 or 0")


def _env_choice(name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first is the default)."""
    raw = os.environ.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise SystemExit(f"{name}={raw!r}: choose from {', '.join(choices)}")
    return raw


def _env_ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        values = sorted({int(part) for part in raw.split(",") if part.strip()})
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not a comma list of integers") from exc
    if not values or values[0] < 1:
        raise SystemExit(f"{name}={raw!r}: give one or more integers >= 1")
    return tuple(values)


@dataclass(frozen=True)
class Settings:
    duration: float  # seconds per wrk / lean-client run
    large_mib: int  # size of the large object (MiB)
    rounds: int
    only: tuple[str, ...]  # servers to run, in canonical order
    purge: bool  # run the purge-under-load test (mediaproxy only)
    herd_clients: int
    herd_rate: int  # origin send rate for the herd, bytes/s
    small_conns: int
    large_conns: int
    wrk_threads: int
    admin_token: str
    mediaproxy_bin: Path
    mediaproxy_extra_toml: str  # appended verbatim to the generated mediaproxy TOML
    purge_entries: int  # total entries filled before the purge test
    purge_prefix_entries: int  # entries under the purged prefix
    scaling: bool  # run the worker-scaling section (nginx, mediaproxy)
    scaling_workers: tuple[int, ...]  # worker counts of the scaling section
    zipf: bool  # run the Zipf memory-tier section (mediaproxy, nginx for ratios)
    zipf_objects: int  # catalogue size
    zipf_object_kib: int  # size of each catalogue object
    zipf_memory_mib: int  # mediaproxy cache.memory_bytes (per worker) for that section
    zipf_s: float  # Zipf exponent
    zipf_seed: int
    zipf_fill: str  # "bulk": load mediaproxy's disk cache offline; "http": fill through it

    @property
    def wrk_shapes(self) -> tuple[tuple[int, int], ...]:
        """(threads, connections) of the small-hit runs: one wrk thread (the fair shape on a
        small machine: a second thread takes a core from the server), then the configured
        threads unless that is also 1."""
        shapes = [(1, self.small_conns)]
        if self.wrk_threads != 1:
            shapes.append((self.wrk_threads, self.small_conns))
        return tuple(shapes)

    @classmethod
    def from_env(cls) -> Settings:
        only_raw = os.environ.get("BENCH_ONLY", "").strip()
        if only_raw:
            wanted = {part.strip() for part in only_raw.split(",") if part.strip()}
            unknown = wanted - set(SERVER_NAMES)
            if unknown:
                raise SystemExit(
                    f"BENCH_ONLY: unknown server(s) {sorted(unknown)}; choose from {SERVER_NAMES}"
                )
            only = tuple(name for name in SERVER_NAMES if name in wanted)
        else:
            only = SERVER_NAMES
        purge_entries = _env_int("BENCH_PURGE_ENTRIES", 1_000_000)
        return cls(
            duration=_env_float("BENCH_DURATION", 15.0, 0.5),
            large_mib=_env_int("BENCH_LARGE_MIB", 256),
            rounds=_env_int("BENCH_ROUNDS", 2),
            only=only,
            purge=_env_flag("BENCH_PURGE"),
            herd_clients=_env_int("BENCH_HERD_CLIENTS", 50),
            herd_rate=_env_int("BENCH_HERD_RATE", 50_000_000),
            small_conns=_env_int("BENCH_SMALL_CONNS", 64),
            large_conns=_env_int("BENCH_LARGE_CONNS", 4),
            wrk_threads=_env_int("BENCH_WRK_THREADS", 2),
            admin_token=os.environ.get("BENCH_ADMIN_TOKEN", "") or secrets.token_hex(16),
            mediaproxy_bin=Path(
                os.environ.get("BENCH_MEDIAPROXY_BIN", "") or REPO / ".venv" / "bin" / "mediaproxy"
            ),
            mediaproxy_extra_toml=os.environ.get("BENCH_MEDIAPROXY_EXTRA_TOML", ""),
            purge_entries=purge_entries,
            purge_prefix_entries=_env_int(
                "BENCH_PURGE_PREFIX_ENTRIES", max(1, purge_entries // 10)
            ),
            scaling=_env_flag("BENCH_SCALING", default=True),
            scaling_workers=_env_ints("BENCH_SCALING_WORKERS", (1, 2, 4)),
            zipf=_env_flag("BENCH_ZIPF", default=True),
            zipf_objects=_env_int("BENCH_ZIPF_OBJECTS", 40_000, 100),
            zipf_object_kib=_env_int("BENCH_ZIPF_OBJECT_KIB", 4),
            zipf_memory_mib=_env_int("BENCH_ZIPF_MEMORY_MIB", 8),
            zipf_s=_env_float("BENCH_ZIPF_S", 1.0, 0.0),
            zipf_seed=_env_int("BENCH_ZIPF_SEED", 17, 0),
            zipf_fill=_env_choice("BENCH_ZIPF_FILL", ("bulk", "http")),
        )
