"""The pool process: receive a job on its pipe, convert, send back a plain reply; forever.

Rule: every outcome is a reply tuple (never an exception across the pipe); a hard crash or a
hang is the pool's to detect (EOF on the pipe, or its timeout), which then replaces us.
"""

from __future__ import annotations

from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from proxy.images import convert as conversion
from proxy.images.spec import Limits, Spec

Reply = tuple[Any, ...]  # ("ok", Converted) | ("refused", status, reason, message)
#                          | ("error", message)


def main(conn: Connection, limits: Limits, initializer: Callable[[], None] | None) -> None:
    conversion.setup(limits.allowed_formats)
    if initializer is not None:
        initializer()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the pool closed our pipe: exit
        conn.send(run(job, limits))


def run(job: tuple[bytes | str, Spec, str | None], limits: Limits) -> Reply:
    source, spec, out_path = job
    try:
        # Looked up at call time: a test initializer may wrap it to hang or crash.
        return ("ok", conversion.convert(source, spec, limits, out_path))
    except conversion.Refusal as refusal:
        return ("refused", refusal.status, refusal.reason, refusal.message)
    except Exception as exc:  # a libvips failure mid-decode (a truncated file, ...)
        return ("error", f"{type(exc).__name__}: {str(exc)[:500]}")
