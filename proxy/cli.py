"""The `mediaproxy` command line: serve, demo, check-config, sign, purge, inspect, stats.

Rule: configuration errors and bad arguments end with a one-line message on stderr and exit
status 2, start-up failures (a port taken, the cache directory locked) with one line and exit
status 1; no traceback reaches the terminal. Every subcommand reads the same configuration
file: --config, else $MEDIAPROXY_CONFIG, else /etc/mediaproxy/mediaproxy.toml when present.
"""

from __future__ import annotations

import argparse
import sys

from proxy import config as config_mod
from proxy.config import Config
from proxy.errors import ConfigError, StartupError
from proxy.logs import configure
from proxy.version import version

DESCRIPTION = """\
mediaproxy: a caching reverse proxy for media origins (images, documents, large video).

Run `mediaproxy serve` under systemd (deploy/mediaproxy.service) or a terminal; SIGHUP reloads
the configuration, SIGTERM stops gracefully. To try it out, `mediaproxy demo` starts a
reference origin with sample media and the proxy in front of it."""

EPILOG = f"""\
configuration:
  Every command reads --config FILE, else ${config_mod.CONFIG_ENV}, else
  {config_mod.DEFAULT_PATH} when it exists, else built-in defaults. Any key can be
  overridden as MEDIAPROXY_<SECTION>_<KEY>, e.g. MEDIAPROXY_CACHE_DIR=/srv/cache.

examples:
  mediaproxy check-config --config /etc/mediaproxy/mediaproxy.toml
  mediaproxy serve
  kill -HUP <pid>                                # reload the configuration
  mediaproxy purge --prefix /media/campaign/
  mediaproxy inspect --prefix /media/images/ --limit 20
  mediaproxy stats
  mediaproxy sign /media/private/report.pdf --ttl 3600

exit status: 0 ok, 1 start-up or runtime failure, 2 configuration or usage error."""


def load(path: str | None) -> Config:
    return config_mod.load(path)


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.server import serve

    config = load(args.config)
    configure(config.log)
    return serve(config, args.config)


def cmd_check_config(args: argparse.Namespace) -> int:
    from proxy.checkconfig import check

    return check(args.config, out)


def cmd_sign(args: argparse.Namespace) -> int:
    """Print a signed URL (keys from auth.keys in the config, or MEDIAPROXY_AUTH_KEYS)."""
    from proxy.policy.tokens import parse_keys
    from proxy.signing import sign_url

    config = load(args.config)
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
    if not args.path.startswith("/"):
        sys.stderr.write(f"mediaproxy: the path must start with '/', got {args.path!r}\n")
        return 2
    try:
        url = sign_url(base.rstrip("/") + args.path, key_id=key_id, secret=keys[key_id],
                       ttl_seconds=args.ttl, prefix=args.prefix, ip=args.ip)
    except ValueError as exc:
        sys.stderr.write(f"mediaproxy: {exc}\n")
        return 2
    out(url)
    return 0


def _with_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", default=config_mod.default_path(),
                   help=f"TOML configuration (default: ${config_mod.CONFIG_ENV}, else "
                        f"{config_mod.DEFAULT_PATH} if present, else built-in defaults)")


def _admin_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--admin-url", metavar="URL", help="default: http://<server.admin_listen>")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up on the admin listener after this long (default: 30)")


def build_parser() -> argparse.ArgumentParser:
    from proxy import admin_client, demo

    parser = argparse.ArgumentParser(
        prog="mediaproxy", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mediaproxy {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the proxy (SIGHUP reloads, SIGTERM stops)",
                       description="Run the proxy: the public and admin listeners, and "
                                   "server.workers worker processes when more than one.")
    _with_config(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="run a reference origin with sample media, and the proxy",
                       description="Start the bundled reference origin (seeded with sample "
                                   "images, a PDF, a protected report and a video) and the "
                                   "proxy in front of it; print commands to try.")
    _with_config(p)
    p.add_argument("--data-dir", default="var/origin", metavar="DIR",
                   help="where the origin keeps its SQLite database (default: var/origin)")
    p.set_defaults(func=demo.cmd_demo)

    p = sub.add_parser("check-config", help="validate the configuration and summarise it",
                       description="Validate the configuration (file and environment), check "
                                   "that the cache directory is writable and the listen "
                                   "addresses resolve and differ, and print a summary with "
                                   "secrets masked. Safe while a server runs.")
    _with_config(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("purge", help="purge by URL, prefix, tag, image preset/format or "
                       "everything",
                       description="Ask this node's admin listener to purge (POST /purge).")
    _with_config(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--url", help="one URL or path")
    what.add_argument("--prefix", help="every URL starting with this path")
    what.add_argument("--tag", help="every object the origin tagged (Surrogate-Key/Cache-Tag)")
    what.add_argument("--all", action="store_true", help="everything")
    p.add_argument("--preset", help="every image conversion made with this preset")
    p.add_argument("--format", help="every image conversion made in this format (with "
                   "--preset: both must match)")
    p.add_argument("--soft", action="store_true",
                   help="mark stale (revalidate with a cheap 304) instead of dropping")
    p.add_argument("--wait-all", action="store_true",
                   help="return when every live node has applied it (cluster)")
    p.add_argument("--token", help="admin token (default: admin.token from the config)")
    _admin_options(p)
    p.set_defaults(func=admin_client.cmd_purge)

    p = sub.add_parser("inspect", help="show what is cached under a prefix, or one entry",
                       description="List cached entries under a path prefix (GET /entries), "
                                   "or show one entry in detail (GET /entry).")
    _with_config(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--prefix", help="list entries whose key starts with this path")
    which.add_argument("--url", help="one URL or path: stored status, headers, state, streams")
    p.add_argument("--limit", type=int, default=50, help="at most this many entries (50)")
    p.add_argument("--json", action="store_true", help="print the admin API's JSON as is")
    _admin_options(p)
    p.set_defaults(func=admin_client.cmd_inspect)

    p = sub.add_parser("stats", help="live view of hit ratio, request rates, fills, bytes",
                       description="A varnishstat-like view that refreshes in the terminal, "
                                   "polling the admin listener's /metrics and /stats; "
                                   "Ctrl-C quits.")
    _with_config(p)
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help="refresh period (default: 2)")
    p.add_argument("--once", action="store_true",
                   help="print one snapshot (rates over --interval) and exit")
    _admin_options(p)
    p.set_defaults(func=admin_client.cmd_stats)

    p = sub.add_parser("sign", help="print a signed URL for a path (or a path prefix)",
                       description="Print a signed URL using auth.keys.")
    _with_config(p)
    p.add_argument("path", help="the path, e.g. /media/private/report.pdf")
    p.add_argument("--ttl", type=int, default=3600, help="seconds the URL stays valid (3600)")
    p.add_argument("--prefix", action="store_true",
                   help="cover every path under PATH (which must end with /)")
    p.add_argument("--ip", help="bind to this client address or network (CIDR)")
    p.add_argument("--key-id", help="default: auth.sign_key_id, else the first key")
    p.add_argument("--base-url", help="default: http://<server.listen>")
    p.set_defaults(func=cmd_sign)
    return parser


def _worker(argv: list[str]) -> int:
    """Internal: one worker process of a supervisor; its configuration arrives on stdin as
    JSON (validated by the supervisor, never re-read from the file)."""
    import asyncio

    from proxy.server import run_worker

    parser = argparse.ArgumentParser(prog="mediaproxy worker")
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    config = config_mod.from_json(sys.stdin.read())
    configure(config.log)
    asyncio.run(run_worker(config, args.index))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["worker"]:
            return _worker(argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except ConfigError as exc:
        sys.stderr.write(f"mediaproxy: configuration error: {exc.message}\n")
        return 2
    except StartupError as exc:
        sys.stderr.write(f"mediaproxy: cannot start: {exc.message}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mediaproxy check-config | head`: the reader left
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
