"""`mediaproxy serve | demo | check-config | worker`: the command line.

Rule: configuration errors and bad arguments end with a one-line message on stderr and exit
status 2; no traceback reaches the terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from proxy import config as config_mod
from proxy.config import Config
from proxy.errors import ConfigError
from proxy.logs import configure

log = logging.getLogger("mediaproxy")

DEMO_PATHS = (
    "/media/images/gradient-64.png",
    "/media/images/photo-1920x1080.png",
    "/media/docs/sample.pdf",
    "/media/video/sample.mp4",
)


def _load(path: str | None) -> Config:
    return config_mod.load(path)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.server import serve

    config = _load(args.config)
    configure(config.log)
    serve(config, args.config)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import asyncio

    from proxy.server import run_worker

    config = _load(args.config)
    configure(config.log)
    asyncio.run(run_worker(config, args.index))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _out(f"ok: {config}")
    return 0


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # it answered
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


def cmd_demo(args: argparse.Namespace) -> int:
    """The reference origin (seeded with sample media) and the proxy in front of it."""
    from proxy.server import serve

    config = _load(args.config)
    configure(config.log)
    origin_url = config.origin.url.rstrip("/")
    host_port = origin_url.split("://", 1)[1]
    host, _, port = host_port.rpartition(":")
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    token = os.environ.get("MEDIAPROXY_ORIGIN_TOKEN", "demo-admin-token")
    log.info("starting the reference origin on %s (first run seeds ~200 MB of sample media)",
             origin_url)
    args_ = [sys.executable, "-m", "origin", "serve", "--db", str(data_dir / "media.sqlite3"),
             "--host", host, "--port", port, "--admin-token", token, "--seed"]
    if config.admin.token:
        # The CMS flow: every publish, access change or delete purges the item's URL here.
        args_ += ["--purge-url", f"http://{config.server.admin_listen}/purge",
                  "--purge-token", config.admin.token]
    origin = subprocess.Popen(args_)
    try:
        if not _wait_http(origin_url + "/_origin/stats", 300, origin):
            sys.stderr.write("error: the reference origin did not start\n")
            return 1
        public = "http://" + config.server.listen
        admin = "http://" + config.server.admin_listen
        _out("")
        _out(f"mediaproxy is starting in front of {origin_url}. Try:")
        for path in DEMO_PATHS:
            _out(f"  curl -sS -o /dev/null -D - {public}{path}    # twice: MISS, then HIT")
        _out(f"  curl -sS {admin}/metrics | grep mediaproxy_requests_total")
        _out("  publish a new revision (the origin then purges it here):")
        _out(f"    .venv/bin/mediaproxy-origin put /media/docs/sample.pdf FILE --url {origin_url}"
             f" --token {token}")
        if config.admin.token:
            _out(f"  purge: .venv/bin/mediaproxy purge --prefix /media/images/ --config "
                 f"{args.config}")
        _out("Ctrl-C stops both.")
        _out("")
        serve(config, args.config)
        return 0
    finally:
        if origin.poll() is None:
            origin.send_signal(signal.SIGTERM)
            try:
                origin.wait(10)
            except subprocess.TimeoutExpired:
                origin.kill()


def cmd_purge(args: argparse.Namespace) -> int:
    """POST /purge to this node's admin listener (the config says where, and the token)."""
    import json

    config = _load(args.config)
    token = args.token or config.admin.token
    if not token:
        sys.stderr.write("mediaproxy: no admin token (set admin.token or pass --token)\n")
        return 2
    body: dict[str, object] = {"soft": args.soft}
    if args.all:
        body["all"] = True
    else:
        kind, value = next((k, v) for k, v in (("url", args.url), ("prefix", args.prefix),
                                               ("tag", args.tag)) if v is not None)
        body[kind] = value
    if args.wait_all:
        body["wait"] = True
    url = args.admin_url or f"http://{config.server.admin_listen}"
    request = urllib.request.Request(
        url.rstrip("/") + "/purge", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            _out(response.read().decode().strip())
            return 0
    except urllib.error.HTTPError as exc:
        sys.stderr.write(f"mediaproxy: purge refused ({exc.code}): {exc.read().decode()}\n")
        return 1
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"mediaproxy: cannot reach the admin listener at {url}: {exc}\n")
        return 1


def cmd_sign(args: argparse.Namespace) -> int:
    """Print a signed URL (keys from auth.keys in the config, or MEDIAPROXY_AUTH_KEYS)."""
    from proxy.policy.tokens import parse_keys
    from proxy.signing import sign_url

    config = _load(args.config)
    keys = parse_keys(config.auth.keys)
    if isinstance(keys, str) or not keys:
        sys.stderr.write("mediaproxy: no signing keys (set auth.keys = \"kid=secret\")\n")
        return 2
    key_id = args.key_id or config.auth.sign_key_id or next(iter(keys))
    if key_id not in keys:
        sys.stderr.write(f"mediaproxy: unknown key id {key_id!r} (known: {', '.join(keys)})\n")
        return 2
    if args.ttl <= 0:
        sys.stderr.write("mediaproxy: --ttl must be > 0\n")
        return 2
    base = args.base_url or f"http://{config.server.listen}"
    try:
        url = sign_url(base.rstrip("/") + args.path, key_id=key_id, secret=keys[key_id],
                       ttl_seconds=args.ttl, prefix=args.prefix, ip=args.ip)
    except ValueError as exc:
        sys.stderr.write(f"mediaproxy: {exc}\n")
        return 2
    _out(url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mediaproxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", default=os.environ.get("MEDIAPROXY_CONFIG"),
                       help="TOML configuration file (default: built-in defaults + env)")

    p = sub.add_parser("serve", help="run the proxy")
    with_config(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("demo", help="run the reference origin with sample media and the proxy")
    with_config(p)
    p.add_argument("--data-dir", default="var/origin", help="where the origin keeps its SQLite")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("purge", help="purge by URL, prefix, tag or everything")
    with_config(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", help="one URL or path")
    what.add_argument("--prefix", help="every URL starting with this path")
    what.add_argument("--tag", help="every object the origin tagged (Surrogate-Key/Cache-Tag)")
    what.add_argument("--all", action="store_true", help="everything")
    p.add_argument("--soft", action="store_true",
                   help="mark stale (revalidate with a cheap 304) instead of dropping")
    p.add_argument("--wait-all", action="store_true",
                   help="return when every live node has applied it (cluster)")
    p.add_argument("--token", help="admin token (default: admin.token from the config)")
    p.add_argument("--admin-url", help="default: http://<server.admin_listen>")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_purge)
    p = sub.add_parser("sign", help="print a signed URL for a path (or a path prefix)")
    with_config(p)
    p.add_argument("path", help="the path, e.g. /media/private/report.pdf")
    p.add_argument("--ttl", type=int, default=3600, help="seconds the URL stays valid")
    p.add_argument("--prefix", action="store_true",
                   help="cover every path under PATH (which must end with /)")
    p.add_argument("--ip", help="bind to this client address or network (CIDR)")
    p.add_argument("--key-id", help="default: auth.sign_key_id, else the first key")
    p.add_argument("--base-url", help="default: http://<server.listen>")
    p.set_defaults(func=cmd_sign)
    p = sub.add_parser("check-config", help="validate the configuration and print it")
    with_config(p)
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("worker", help=argparse.SUPPRESS)
    with_config(p)
    p.add_argument("--index", type=int, default=0)
    p.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        sys.stderr.write(f"mediaproxy: configuration error: {exc.message}\n")
        return 2
    except KeyboardInterrupt:
        return 130
