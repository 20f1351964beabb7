"""`mediaproxy purge | inspect | stats`: commands that talk to a running node's admin listener.

Rule: the address and token come from the same configuration the server reads; an unreachable
listener or a refusal is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from proxy import config as config_mod
from proxy.cli import out
from proxy.statsview import Snapshot, render


class AdminError(Exception):
    pass


def _base(args: argparse.Namespace) -> tuple[str, config_mod.Config]:
    config = config_mod.load(args.config)
    url = args.admin_url or f"http://{config.server.admin_listen}"
    return url.rstrip("/"), config


def _call(url: str, timeout: float, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise AdminError(f"refused ({exc.code}): {exc.read().decode(errors='replace').strip()}"
                         ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AdminError(f"cannot reach the admin listener at {url}: {reason}") from None


def _fail(exc: AdminError) -> int:
    sys.stderr.write(f"mediaproxy: {exc}\n")
    return 1


def cmd_purge(args: argparse.Namespace) -> int:
    """POST /purge to this node's admin listener (the config says where, and the token)."""
    base, config = _base(args)
    token = args.token or config.admin.token
    if not token:
        sys.stderr.write("mediaproxy: no admin token (set admin.token or pass --token)\n")
        return 2
    body: dict[str, object] = {"soft": args.soft}
    named = args.all or any(v is not None for v in (args.url, args.prefix, args.tag))
    conversions = {k: v for k, v in (("preset", args.preset), ("format", args.format))
                   if v is not None}
    if named == bool(conversions):
        sys.stderr.write("mediaproxy: give one of --url, --prefix, --tag, --all, or --preset "
                         "and/or --format\n")
        return 2
    if conversions:
        body.update(conversions)
    elif args.all:
        body["all"] = True
    else:
        kind, value = next((k, v) for k, v in (("url", args.url), ("prefix", args.prefix),
                                               ("tag", args.tag)) if v is not None)
        body[kind] = value
    if args.wait_all:
        body["wait"] = True
    try:
        answer = _call(base + "/purge", args.timeout, json.dumps(body).encode(),
                       {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    except AdminError as exc:
        return _fail(exc)
    out(answer.decode().strip())
    return 0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds / size:.1f}{unit}"
    return f"{sign}{seconds:.0f}s"


def format_entries(answer: dict[str, Any]) -> list[str]:
    lines = [f"{'SIZE':>12} {'AGE':>7} {'TTL':>7} {'REV':>4} FLAGS  KEY"]
    for e in answer["entries"]:
        flags = ("S" if e.get("soft_purged") else "-") + ("V" if e.get("variant") else "-")
        lines.append(f"{e['size_bytes']:>12} {_age(e.get('age_seconds')):>7} "
                     f"{_age(e.get('fresh_for_seconds')):>7} {e.get('revision') or '-':>4} "
                     f"{flags:5}  {e['key']}")
    more = " (more: raise --limit)" if answer.get("truncated") else ""
    lines.append(f"{len(answer['entries'])} entries{more}; TTL < 0: stale; S soft-purged, "
                 "V a Vary variant")
    return lines


def format_entry(answer: dict[str, Any]) -> list[str]:
    if not answer.get("variants"):
        return [f"{answer['url']}: not cached"]
    lines = []
    for v in answer["variants"]:
        lines.append(f"{v['key']}  ({v['state']}, {v['size_bytes']} bytes, age "
                     f"{_age(v.get('age_seconds'))}, fresh for {_age(v.get('fresh_for_seconds'))})")
        lines.append(f"  stored status {v['status']}; tags: {' '.join(v['tags']) or '-'}")
        for name, value in v["headers"]:
            lines.append(f"  {name}: {value}")
    fills = answer.get("fills_in_progress", 0)
    lines.append(f"streams reading it now: {answer.get('open_streams', 0)}; "
                 f"fills in progress: {fills}")
    return lines


def cmd_inspect(args: argparse.Namespace) -> int:
    base, _ = _base(args)
    if args.prefix is not None:
        query = urllib.parse.urlencode({"prefix": args.prefix, "limit": args.limit})
        url = f"{base}/entries?{query}"
    else:
        url = f"{base}/entry?{urllib.parse.urlencode({'url': args.url})}"
    try:
        answer = json.loads(_call(url, args.timeout))
    except AdminError as exc:
        return _fail(exc)
    if args.json:
        out(json.dumps(answer, indent=2, sort_keys=True))
    else:
        for line in format_entries(answer) if args.prefix is not None else format_entry(answer):
            out(line)
    return 0


def _snapshot(base: str, timeout: float) -> Snapshot:
    metrics = _call(base + "/metrics", timeout).decode()
    stats = json.loads(_call(base + "/stats", timeout))
    return Snapshot.parse(metrics, stats, time.monotonic())


def cmd_stats(args: argparse.Namespace) -> int:
    base, _ = _base(args)
    interval = max(args.interval, 0.1)
    try:
        before = _snapshot(base, args.timeout)
        while True:
            time.sleep(interval)
            now = _snapshot(base, args.timeout)
            screen = render(before, now, base)
            if args.once:
                out(screen)
                return 0
            # Clear and home: plain ANSI, works over SSH in any terminal.
            sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
            sys.stdout.flush()
            before = now
    except AdminError as exc:
        return _fail(exc)
