"""`mediaproxy-origin`: serve the reference origin, or publish, delete and re-police its items.

Rule: results go to stdout as JSON, diagnostics to stderr through logging; a failure is one line
on stderr and exit status 1. `serve` stops cleanly (exit 0) on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import mimetypes
import os
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from origin.app import create_app
from origin.db import MediaStore
from origin.remote import OriginClient, OriginClientError
from origin.seed import DEFAULT_VIDEO_BYTES, seed

DEFAULT_DB = Path("var/origin/media.sqlite3")
DEFAULT_URL = "http://127.0.0.1:8090"
TOKEN_ENV = "MEDIAPROXY_ORIGIN_TOKEN"
URL_ENV = "MEDIAPROXY_ORIGIN_URL"
# In-flight downloads get this long to finish after a stop signal.
SHUTDOWN_TIMEOUT_SECONDS = 3.0

log = logging.getLogger("origin.cli")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mediaproxy")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediaproxy-origin", description="The reference media origin (SQLite-backed)."
    )
    parser.add_argument("--version", action="version", version=f"mediaproxy-origin {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve media over HTTP")
    serve.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"default: {DEFAULT_DB}")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    serve.add_argument(
        "--admin-token",
        default=os.environ.get(TOKEN_ENV),
        help=f"enables the admin API (default: ${TOKEN_ENV})",
    )
    serve.add_argument("--seed", action="store_true", help="publish sample media into an empty DB")
    serve.add_argument("--video-size-bytes", type=int, default=DEFAULT_VIDEO_BYTES)
    serve.add_argument("--default-cache-control", default="max-age=60")
    serve.add_argument("--purge-url", help="POST {'url': path} here after every change")
    serve.add_argument("--purge-token")
    serve.add_argument("--log-level", default="INFO")

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"the running origin (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    client.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"default: ${TOKEN_ENV}")

    put = commands.add_parser("put", parents=[client], help="publish FILE as a new revision")
    put.add_argument("path")
    put.add_argument("file", type=Path)
    put.add_argument("--content-type", help="default: guessed from the file name")
    put.add_argument("--access", choices=["public", "protected"])
    put.add_argument("--cache-control")

    rm = commands.add_parser("rm", parents=[client], help="delete an item")
    rm.add_argument("path")

    access = commands.add_parser("access", parents=[client], help="set an item's access policy")
    access.add_argument("path")
    access.add_argument("policy", choices=["public", "protected"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    try:
        client = OriginClient(args.url, args.token)
        if args.command == "put":
            content_type = args.content_type or (
                mimetypes.guess_type(args.file.name)[0] or "application/octet-stream"
            )
            result = client.put(
                args.path,
                args.file,
                content_type=content_type,
                access=args.access,
                cache_control=args.cache_control,
            )
        elif args.command == "rm":
            client.delete(args.path)
            result = {"path": args.path, "deleted": True}
        else:
            result = client.set_access(args.path, args.policy)
    except OriginClientError as exc:
        sys.stderr.write(f"mediaproxy-origin: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args.db.parent.mkdir(parents=True, exist_ok=True)
        if args.seed:
            _seed(args.db, args.video_size_bytes)
        app = create_app(
            args.db,
            admin_token=args.admin_token or None,
            default_cache_control=args.default_cache_control,
            purge_url=args.purge_url,
            purge_token=args.purge_token,
        )
        return asyncio.run(_run(app, args.host, args.port))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"mediaproxy-origin: {exc}\n")
        return 1


def _seed(db: Path, video_size_bytes: int) -> None:
    # Before the event loop exists, so blocking here blocks nobody.
    store = MediaStore(db)
    try:
        started = time.monotonic()
        if seed(store, video_size_bytes=video_size_bytes):
            log.info("seeded %s in %.1f s", db, time.monotonic() - started)
    finally:
        store.close()


async def _run(app: web.Application, host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        # One line on stdout, so scripts (and tests using --port 0) learn the address.
        sys.stdout.write(f"mediaproxy-origin listening on http://{bound_host}:{bound_port}\n")
        sys.stdout.flush()
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
    return 0
