"""`mediaproxy demo`: the reference origin (seeded with sample media) and the proxy in front.

Rule: it works from a plain `pip install` anywhere, not only in a checkout: without --config it
uses built-in demo settings (an admin token, a signing key), and every command it prints names
a program that exists in this installation.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from proxy import config as config_mod
from proxy.cli import out
from proxy.config import Config
from proxy.logs import configure

log = logging.getLogger("mediaproxy")

DEMO_PATHS = (
    "/media/images/gradient-64.png",
    "/media/images/photo-1920x1080.png",
    "/media/docs/sample.pdf",
    "/media/video/sample.mp4",
)
PROTECTED_PATH = "/media/private/report.pdf"
# Used when no configuration file is given: the same values as config/mediaproxy.toml.
DEMO_SETTINGS = {
    "admin": {"token": "demo-admin-token-change-me"},
    "auth": {"keys": "demo=demo-signing-secret-change-me"},
}
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
ORIGIN_BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                    "from origin.cli import main; sys.exit(main(sys.argv[1:]))")


def program(name: str) -> str:
    """`name` as the user can type it: the script beside this Python when it is there (a
    virtualenv not on PATH), else the bare name."""
    beside = Path(sys.executable).parent / name
    if beside.exists() and shutil.which(name) != str(beside):
        return str(beside)
    return name


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


def demo_config(path: str | None) -> Config:
    if path is not None:
        return config_mod.load(path)
    import os

    return config_mod.from_dict(DEMO_SETTINGS, os.environ)


def signed_example(config: Config) -> str | None:
    from proxy.policy.tokens import parse_keys
    from proxy.signing import sign_url

    keys = parse_keys(config.auth.keys)
    if isinstance(keys, str) or not keys:
        return None
    key_id = config.auth.sign_key_id or next(iter(keys))
    return sign_url(f"http://{config.server.listen}{PROTECTED_PATH}", key_id=key_id,
                    secret=keys[key_id], ttl_seconds=3600)


PRESET_SAMPLE = "/media/images/photo-rotated.jpg"  # seeded when pyvips is installed


def preset_examples(config: Config, public: str) -> list[str]:
    """Conversion URLs to try, one per configured preset (none when there are none)."""
    lines = []
    for preset in config.images.presets:
        url = f"{public}{PRESET_SAMPLE}?preset={preset.name}"
        lines.append(f"  curl -sS -o /dev/null -D - -H 'Accept: image/webp' '{url}'"
                     f"    # {preset.name}: {preset.width or 'auto'}x{preset.height or 'auto'}"
                     f" {preset.fit}, {preset.format}")
        if len(preset.dpr) > 1:
            lines.append(f"  curl -sS -o /dev/null -D - '{url}&dpr={preset.dpr[-1]:g}'"
                         f"    # the same at {preset.dpr[-1]:g}x")
    return lines


def print_tour(config: Config, origin_url: str, token: str, config_path: str | None) -> None:
    public = "http://" + config.server.listen
    admin = "http://" + config.server.admin_listen
    mediaproxy, origin_cli = program("mediaproxy"), program("mediaproxy-origin")
    with_config = f" --config {config_path}" if config_path else ""
    out("")
    out(f"mediaproxy is starting in front of {origin_url}. Try:")
    for path in DEMO_PATHS:
        out(f"  curl -sS -o /dev/null -D - {public}{path}    # twice: MISS, then HIT")
    signed = signed_example(config)
    if signed:
        out(f"  curl -sS -o /dev/null -D - {public}{PROTECTED_PATH}    # 401: protected")
        out(f"  curl -sS -o /dev/null -D - '{signed}'    # 200: signed")
        out(f"  {mediaproxy} sign {PROTECTED_PATH}{with_config}    # sign another")
    for line in preset_examples(config, public):
        out(line)
    out(f"  curl -sS {admin}/metrics | grep mediaproxy_requests_total")
    out(f"  {mediaproxy} stats{with_config}    # live view; Ctrl-C quits")
    out(f"  {mediaproxy} inspect --prefix /media/{with_config}")
    out("  publish a new revision (the origin then purges it here):")
    out(f"    {origin_cli} put /media/docs/sample.pdf FILE --url {origin_url} --token {token}")
    if config.admin.token:
        out(f"  {mediaproxy} purge --prefix /media/images/{with_config}")
        out(f"  admin console: http://{config.server.admin_listen}/console/ "
            "(sign in with admin.token)")
    out("Ctrl-C stops both.")
    out("")


def cmd_demo(args: argparse.Namespace) -> int:
    from proxy.server import serve

    config = demo_config(args.config)
    configure(config.log)
    origin_url = config.origin.url.rstrip("/")
    host, _, port = origin_url.split("://", 1)[1].rpartition(":")
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # One admin token for both: the origin's publishing API and the proxy's purge API.
    token = config.admin.token or DEMO_SETTINGS["admin"]["token"]
    log.info("starting the reference origin on %s (first run seeds ~200 MB of sample media)",
             origin_url)
    argv = [sys.executable, "-c", ORIGIN_BOOTSTRAP, PACKAGE_ROOT, "serve",
            "--db", str(data_dir / "media.sqlite3"), "--host", host, "--port", port,
            "--admin-token", token, "--seed"]
    if config.admin.token:
        # The CMS flow: every publish, access change or delete purges the item's URL here.
        argv += ["--purge-url", f"http://{config.server.admin_listen}/purge",
                 "--purge-token", config.admin.token]
    origin = subprocess.Popen(argv)
    try:
        if not _wait_http(origin_url + "/_origin/stats", 300, origin):
            sys.stderr.write("mediaproxy: the reference origin did not start\n")
            return 1
        print_tour(config, origin_url, token, args.config)
        return serve(config, args.config)
    finally:
        if origin.poll() is None:
            origin.send_signal(signal.SIGTERM)
            try:
                origin.wait(10)
            except subprocess.TimeoutExpired:
                origin.kill()
