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


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


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
        )
