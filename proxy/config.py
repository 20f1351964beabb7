"""Configuration: TOML file + MEDIAPROXY_<SECTION>_<KEY> environment overrides -> frozen values.

Rule: every key has a default; an unknown section or key, a wrong type or an out-of-range value
stops start-up with a ConfigError naming the key (`cache.max_size_bytes: must be >= 1048576`).
This module holds the sections (every key, its default and its checks); config_load.py reads
a file, the environment or a worker's JSON hand-over into them.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy import config_load
from proxy.config_load import (
    CONFIG_ENV,
    DEFAULT_PATH,
    ENV_NOT_KEYS,
    ENV_PREFIX,
    default_path,
    to_json,
)
from proxy.errors import ConfigError
from proxy.imageconfig import ImagesConfig
from proxy.listen import listeners_overlap

# Re-exported: callers read these from proxy.config.
__all__ = ["CONFIG_ENV", "DEFAULT_PATH", "ENV_NOT_KEYS", "ENV_PREFIX", "AdminConfig",
           "AuthConfig", "CacheConfig", "ClusterConfig", "Config", "LogConfig", "OriginConfig",
           "ServerConfig", "default_path", "from_dict", "from_json", "load", "split_csv",
           "to_json"]

def _listen(value: str, key: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:8080"  # public listener, HOST:PORT
    admin_listen: str = "127.0.0.1:8081"  # admin listener: /metrics, /healthz, /readyz
    workers: int = 1  # processes sharing the listener (SO_REUSEPORT) and the cache dir
    max_url_bytes: int = 8192  # longer request targets get 414
    max_header_bytes: int = 8190  # longer header lines get 400 (aiohttp's parser enforces)
    shutdown_timeout_seconds: float = 10.0  # graceful stop: let open responses finish
    via: str = "mediaproxy"  # pseudonym in the Via header we add (RFC 9110 §7.6.3)
    # Networks of the proxies in front (a TLS front, a load balancer) whose forwarding header
    # is believed for the client's address (nginx real_ip): "" = none, every peer is a client.
    trusted_proxies: str = ""
    real_ip_header: str = "X-Forwarded-For"  # or Forwarded (RFC 7239), X-Real-IP
    # A connection must deliver a complete request head within this many seconds of opening,
    # or of its previous response (so it is also the idle keep-alive timeout): slowloris.
    header_timeout_seconds: float = 20.0
    server_header: str = "mediaproxy"  # Server field of our answers (no version by default)
    cache_status: bool = True  # add our RFC 9211 Cache-Status member (named by `via`)
    x_cache: bool = True  # the X-Cache field (HIT, MISS, ...) as well
    # Answer repeated plain GETs of memory-tier hits from the connection's parser, in front of
    # the request pipeline (README: "The lane"); false = every request takes the full path.
    fast_hits: bool = True

    def validate(self) -> None:
        _listen(self.listen, "server.listen")
        _listen(self.admin_listen, "server.admin_listen")
        if not 1 <= self.workers <= 64:
            raise ConfigError("server.workers: must be between 1 and 64")
        if not 256 <= self.max_url_bytes <= 1 << 20:
            raise ConfigError("server.max_url_bytes: must be between 256 and 1048576")
        if not 1024 <= self.max_header_bytes <= 1 << 20:
            raise ConfigError("server.max_header_bytes: must be between 1024 and 1048576")
        if self.shutdown_timeout_seconds < 0:
            raise ConfigError("server.shutdown_timeout_seconds: must be >= 0")
        _networks(self.trusted_proxies, "server.trusted_proxies")
        if self.real_ip_header.lower() not in ("x-forwarded-for", "forwarded", "x-real-ip"):
            raise ConfigError("server.real_ip_header: must be X-Forwarded-For, Forwarded or "
                              f"X-Real-IP, got {self.real_ip_header!r}")
        if not 0 < self.header_timeout_seconds <= 3600:
            raise ConfigError("server.header_timeout_seconds: must be > 0 and <= 3600")
        if not self.server_header or any(c in self.server_header for c in "\r\n"):
            raise ConfigError("server.server_header: must be non-empty, on one line")
        if listeners_overlap(self.listen, self.admin_listen):
            raise ConfigError(f"server.admin_listen: must differ from server.listen "
                              f"({self.admin_listen!r} and {self.listen!r} share a port)")

    def trusted_networks(self) -> list[str]:
        return split_csv(self.trusted_proxies)


@dataclass(frozen=True, slots=True)
class OriginConfig:
    url: str = "http://127.0.0.1:8090"  # base URL of the origin; request paths are appended
    connect_timeout_seconds: float = 5.0  # TCP connect to the origin; exceeded -> 504
    read_timeout_seconds: float = 30.0  # max silence while waiting for headers or body bytes
    max_connections: int = 100  # per worker process
    forward_host: bool = False  # send the client's Host instead of the origin's
    keepalive_seconds: float = 4.0  # idle origin connections are closed after this; keep it
    # below the origin's own keep-alive timeout (Node 5 s, nginx 75 s, Apache 5 s)

    def validate(self) -> None:
        if not (self.url.startswith("http://") or self.url.startswith("https://")):
            raise ConfigError(f"origin.url: must start with http:// or https://, got {self.url!r}")
        for name in ("connect_timeout_seconds", "read_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"origin.{name}: must be > 0")
        if self.max_connections < 1:
            raise ConfigError("origin.max_connections: must be >= 1")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    dir: str = "var/cache"  # cache directory: index, hashed body dirs, tmp/
    max_size_bytes: int = 10 * 1024**3  # index + bodies; least recently used evicted beyond it
    min_free_bytes: int = 0  # also evict while the filesystem has less free space than this
    heuristic_fraction: float = 0.1  # RFC 9111 §4.2.2 share of (Date - Last-Modified)
    heuristic_max_seconds: float = 86400.0  # cap on heuristic freshness
    fill_chunk_bytes: int = 256 * 1024  # origin read size while filling
    fill_abandon_bytes: int = 64 * 1024 * 1024  # drop a fill nobody reads any more if more
    # than this remains (0 = always finish: a later request then finds it cached)
    eviction_interval_seconds: float = 1.0  # background cull / access-time flush period
    expose_surrogate_keys: bool = False  # pass Surrogate-Key / Cache-Tag on to clients (a CDN)
    memory_bytes: int = 32 * 1024 * 1024  # per-worker memory tier for small bodies; 0 = off
    memory_body_max_bytes: int = 128 * 1024  # larger bodies always go out by sendfile
    # Longest life of a memory copy: copies are dropped at once when their key changes in any
    # process (per-key change signals); this only bounds a signal lost to a crash.
    memory_ttl_seconds: float = 10.0
    abort_streams_on_revoke: bool = False  # cut running streams of purged/deleted/revoked items
    stale_if_error_seconds: float = 0.0  # grace: serve stale this long past expiry when the
    # origin is down, times out or answers 5xx, even without its stale-if-error directive
    lifetime_rules: str = ""  # "prefix=seconds,..." overrides origin lifetimes (proxy_cache_valid)

    def validate(self) -> None:
        if not self.dir:
            raise ConfigError("cache.dir: must not be empty")
        if self.max_size_bytes < 1024 * 1024:
            raise ConfigError("cache.max_size_bytes: must be >= 1048576")
        if self.min_free_bytes < 0:
            raise ConfigError("cache.min_free_bytes: must be >= 0")
        if self.stale_if_error_seconds < 0:
            raise ConfigError("cache.stale_if_error_seconds: must be >= 0")
        for rule in split_csv(self.lifetime_rules):
            prefix, sep, seconds = rule.rpartition("=")
            if not sep or not prefix.startswith("/") or not seconds.isdigit():
                raise ConfigError(
                    f"cache.lifetime_rules: expected /prefix=seconds, got {rule!r}")
        if not 0 <= self.heuristic_fraction <= 1:
            raise ConfigError("cache.heuristic_fraction: must be between 0 and 1")
        if self.heuristic_max_seconds < 0:
            raise ConfigError("cache.heuristic_max_seconds: must be >= 0")
        if not 4096 <= self.fill_chunk_bytes <= 16 * 1024 * 1024:
            raise ConfigError("cache.fill_chunk_bytes: must be between 4096 and 16777216")
        if self.eviction_interval_seconds <= 0:
            raise ConfigError("cache.eviction_interval_seconds: must be > 0")
        if not 0 <= self.memory_bytes <= 1 << 34:
            raise ConfigError("cache.memory_bytes: must be between 0 and 17179869184")
        if not 0 <= self.memory_body_max_bytes <= 16 * 1024 * 1024:
            raise ConfigError("cache.memory_body_max_bytes: must be between 0 and 16777216")
        if not 0 < self.memory_ttl_seconds <= 60:
            raise ConfigError("cache.memory_ttl_seconds: must be > 0 and <= 60")

    def lifetime_overrides(self) -> tuple[tuple[str, float], ...]:
        """(prefix, seconds), longest prefix first."""
        rules = [(p, float(s)) for p, _, s in (r.rpartition("=")
                                                for r in split_csv(self.lifetime_rules))]
        return tuple(sorted(rules, key=lambda rule: len(rule[0]), reverse=True))


@dataclass(frozen=True, slots=True)
class AdminConfig:
    token: str = ""  # bearer token for POST /purge and `mediaproxy purge`; "" disables purging
    # Clients allowed the PURGE method without the admin token (their real address, behind
    # server.trusted_proxies). "" = PURGE always needs the token: trust a network explicitly.
    purge_networks: str = ""
    node_name: str = ""  # this node's name in purge answers; "" = the host name

    def validate(self) -> None:
        if self.token and len(self.token) < 16:
            raise ConfigError("admin.token: use at least 16 characters (or \"\" to disable)")
        _networks(self.purge_networks, "admin.purge_networks")

    def networks_text(self) -> list[str]:
        return [n.strip() for n in self.purge_networks.split(",") if n.strip()]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    keys: str = ""  # signing keys "kid=secret,kid2=secret2" (16+ char secrets); "" = no tokens
    sign_key_id: str = ""  # key `mediaproxy sign` uses by default ("" = the first)
    protected_prefixes: str = ""  # comma-separated path prefixes that always need a token
    public_prefixes: str = ""  # comma-separated prefixes that never do (override the origin)
    access_header: str = "X-Media-Access"  # origin's per-item policy header (public|protected)
    access_recheck_seconds: float = 30.0  # protected objects revalidated at least this often
    clock_skew_seconds: float = 30.0  # tolerance on token expiry
    cookie_name: str = ""  # also accept the token query string in this cookie (players)
    # Auth callout: protected objects requested without a valid token are allowed when this
    # endpoint (absolute URL, or a path on the origin) answers 2xx for the request's session.
    callout_url: str = ""  # "" = off
    callout_headers: str = "Cookie,Authorization"  # request fields forwarded (the session)
    callout_cookie: str = ""  # forward only this cookie ("" = the whole Cookie field)
    callout_allow_seconds: float = 30.0  # an allow is remembered per (session, item) this long
    callout_deny_seconds: float = 5.0  # a deny (401/403) this long
    callout_timeout_seconds: float = 2.0  # no answer in time counts as a failure
    callout_failure_status: int = 503  # endpoint down, slow or 5xx: refuse with 503 or 403
    callout_cache_entries: int = 100_000  # remembered answers per worker (LRU beyond)

    def validate(self) -> None:
        from proxy.policy.tokens import parse_keys

        parsed = parse_keys(self.keys)
        if isinstance(parsed, str):
            raise ConfigError(f"auth.keys: {parsed}")
        if self.sign_key_id and self.sign_key_id not in parsed:
            raise ConfigError(f"auth.sign_key_id: {self.sign_key_id!r} is not in auth.keys")
        for name in ("protected_prefixes", "public_prefixes"):
            for prefix in split_csv(getattr(self, name)):
                if not prefix.startswith("/"):
                    raise ConfigError(f"auth.{name}: {prefix!r} must start with '/'")
        if self.access_recheck_seconds < 0 or self.clock_skew_seconds < 0:
            raise ConfigError("auth: access_recheck_seconds and clock_skew_seconds must be >= 0")
        url = self.callout_url
        if url and not (url.startswith(("http://", "https://")) or url.startswith("/")):
            raise ConfigError(f"auth.callout_url: expected http(s)://... or /path, got {url!r}")
        if url and any(c in url for c in " \t\r\n"):
            raise ConfigError("auth.callout_url: must not contain whitespace")
        for name in split_csv(self.callout_headers):
            if not _TOKEN_CHARS.issuperset(name) or name.lower() in _NOT_FORWARDABLE:
                raise ConfigError(f"auth.callout_headers: {name!r} is not a forwardable field")
        if url and not split_csv(self.callout_headers):
            raise ConfigError("auth.callout_headers: name at least one field (e.g. Cookie)")
        if self.callout_cookie and not _TOKEN_CHARS.issuperset(self.callout_cookie):
            raise ConfigError(f"auth.callout_cookie: {self.callout_cookie!r} is not a cookie name")
        if self.callout_cookie and "cookie" not in (
                name.lower() for name in split_csv(self.callout_headers)):
            raise ConfigError("auth.callout_cookie: needs Cookie in auth.callout_headers")
        for name in ("callout_allow_seconds", "callout_deny_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"auth.{name}: must be >= 0")
        if not 0 < self.callout_timeout_seconds <= 60:
            raise ConfigError("auth.callout_timeout_seconds: must be > 0 and <= 60")
        if self.callout_failure_status not in (403, 503):
            raise ConfigError("auth.callout_failure_status: must be 403 or 503")
        if not 1 <= self.callout_cache_entries <= 10_000_000:
            raise ConfigError("auth.callout_cache_entries: must be between 1 and 10000000")


# RFC 9110 §5.6.2 token characters: field names and cookie names.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


# Framing and hop-by-hop fields (RFC 9110 §7.6.1) are not a session: never forwarded.
_NOT_FORWARDABLE = frozenset({"host", "content-length", "transfer-encoding", "connection", "te",
                              "upgrade", "expect", "keep-alive", "trailer",
                              "proxy-authorization", "proxy-connection"})


def _networks(text: str, key: str) -> None:
    for net in split_csv(text):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"{key}: not a network: {net!r}") from None


def split_csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    redis_url: str = ""  # e.g. redis://127.0.0.1:6379/0; "" = this node runs alone
    channel: str = "mediaproxy:purge"  # pub/sub channel (and key prefix) shared by the nodes
    heartbeat_seconds: float = 2.0  # nodes announce themselves this often
    node_ttl_seconds: float = 10.0  # a node silent this long is no longer counted live
    wait_timeout_seconds: float = 5.0  # how long "wait": true waits for acknowledgements
    ban_ttl_seconds: float = 3600.0  # bans kept in Redis this long for nodes that (re)start

    def validate(self) -> None:
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://",
                                                             "unix://")):
            raise ConfigError(f"cluster.redis_url: expected redis://..., got {self.redis_url!r}")
        for name in ("heartbeat_seconds", "node_ttl_seconds", "wait_timeout_seconds",
                     "ban_ttl_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"cluster.{name}: must be > 0")
        if self.node_ttl_seconds <= self.heartbeat_seconds:
            raise ConfigError("cluster.node_ttl_seconds: must exceed heartbeat_seconds")
        if not self.channel:
            raise ConfigError("cluster.channel: must not be empty")
        if self.redis_url and importlib.util.find_spec("redis") is None:
            raise ConfigError("cluster.redis_url: cluster mode needs the Redis client; install "
                              "it with: pip install 'mediaproxy[cluster]'")


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"  # debug | info | warning | error
    format: str = "text"  # text (development) | json (one JSON object per line, production)
    # | combined (access lines in NCSA combined + cache status and duration; the rest as text)
    access_log: bool = True  # one line per request

    def validate(self) -> None:
        if self.level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log.level: must be debug, info, warning or error, got {self.level!r}"
            )
        if self.format not in ("text", "json", "combined"):
            raise ConfigError(
                f"log.format: must be text, json or combined, got {self.format!r}")


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    origin: OriginConfig = field(default_factory=OriginConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    log: LogConfig = field(default_factory=LogConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)

    def validate(self) -> Config:
        self.server.validate()
        self.origin.validate()
        self.cache.validate()
        self.admin.validate()
        self.auth.validate()
        self.cluster.validate()
        self.log.validate()
        self.images.validate()
        return self


def load(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file (or only defaults when None) and apply environment overrides."""
    return config_load.load(Config, path, env)


def from_json(text: str) -> Config:
    """The configuration a worker process was handed (`to_json`), validated again."""
    return config_load.from_json(Config, text)


def from_dict(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    return config_load.build(Config, data, env or {})
