from pathlib import Path

import pytest

from proxy import config
from proxy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid() -> None:
    c = config.from_dict({})
    assert c.server.workers == 1 and c.cache.max_size_bytes > 0


@pytest.mark.parametrize("name", ["mediaproxy.toml", "production.example.toml"])
def test_shipped_configs_load(name: str) -> None:
    config.load(ROOT / "config" / name, env={})


def test_env_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[cache]\ndir = "/from/file"\n[server]\nworkers = 2\n')
    c = config.load(path, env={"MEDIAPROXY_CACHE_DIR": "/from/env", "MEDIAPROXY_LOG_ACCESS_LOG":
                               "false", "MEDIAPROXY_ORIGIN_READ_TIMEOUT_SECONDS": "2.5"})
    assert c.cache.dir == "/from/env"
    assert c.server.workers == 2
    assert c.log.access_log is False
    assert c.origin.read_timeout_seconds == 2.5


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        ({"cache": {"size": 1}}, {}, "cache.size: unknown key"),
        ({"cach": {}}, {}, "cach: unknown section"),
        ({"cache": {"max_size_bytes": "big"}}, {}, "cache.max_size_bytes: expected a size"),
        ({"cache": {"max_size_bytes": True}}, {}, "cache.max_size_bytes: expected an integer"),
        ({"cache": {"memory_ttl_seconds": "soon"}}, {}, "expected a duration"),
        ({}, {"MEDIAPROXY_CACHE_SIZE": "1"}, "MEDIAPROXY_CACHE_SIZE: unknown environment"),
        ({"server": {"listen": "0.0.0.0:9000", "admin_listen": "127.0.0.1:9000"}}, {},
         "server.admin_listen: must differ"),
        ({"cache": {"max_size_bytes": 10}}, {}, "cache.max_size_bytes: must be >= 1048576"),
        ({"server": {"workers": 0}}, {}, "server.workers"),
        ({"server": {"listen": "nope"}}, {}, "server.listen: expected HOST:PORT"),
        ({"origin": {"url": "ftp://x"}}, {}, "origin.url"),
        ({"log": {"format": "xml"}}, {}, "log.format"),
        ({"log": {"access_log": "yes"}}, {}, "log.access_log: expected true or false"),
        ({}, {"MEDIAPROXY_SERVER_WORKERS": "two"}, "MEDIAPROXY_SERVER_WORKERS"),
        ({"cache": []}, {}, "cache: expected a table"),
        ({"auth": {"callout_url": "ftp://x"}}, {}, "auth.callout_url: expected http(s)"),
        ({"auth": {"callout_url": "/a b"}}, {}, "auth.callout_url: must not contain"),
        ({"auth": {"callout_headers": "Co okie"}}, {}, "auth.callout_headers: 'Co okie'"),
        ({"auth": {"callout_headers": "Host"}}, {}, "auth.callout_headers: 'Host'"),
        ({"auth": {"callout_headers": "Cookie,Transfer-Encoding"}}, {},
         "auth.callout_headers: 'Transfer-Encoding'"),
        ({"auth": {"callout_headers": "Authorization", "callout_cookie": "sid"}}, {},
         "auth.callout_cookie: needs Cookie"),
        ({"auth": {"callout_url": "/x", "callout_headers": ""}}, {},
         "auth.callout_headers: name at least one"),
        ({"auth": {"callout_cookie": "a=b"}}, {}, "auth.callout_cookie"),
        ({"auth": {"callout_failure_status": 500}}, {}, "auth.callout_failure_status: must be"),
        ({"auth": {"callout_timeout_seconds": 0}}, {}, "auth.callout_timeout_seconds"),
        ({"auth": {"callout_deny_seconds": -1}}, {}, "auth.callout_deny_seconds: must be >= 0"),
        ({"auth": {"callout_cache_entries": 0}}, {}, "auth.callout_cache_entries"),
        # These checks once sat after a `return` and never ran.
        ({"cache": {"eviction_interval_seconds": 0}}, {}, "cache.eviction_interval_seconds"),
        ({"cache": {"heuristic_fraction": 5}}, {}, "cache.heuristic_fraction"),
        ({"cache": {"memory_ttl_seconds": 0}}, {}, "cache.memory_ttl_seconds"),
        ({"cache": {"fill_chunk_bytes": 1}}, {}, "cache.fill_chunk_bytes"),
        ({"server": {"trusted_proxies": "10.0.0.0/8,front"}}, {},
         "server.trusted_proxies: not a network: 'front'"),
        ({"server": {"real_ip_header": "X-Client"}}, {}, "server.real_ip_header"),
        ({"server": {"header_timeout_seconds": 0}}, {}, "server.header_timeout_seconds"),
        ({"admin": {"purge_networks": "everyone"}}, {}, "admin.purge_networks: not a network"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, object], env: dict[str, str],
                                 message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(data, env)
    assert message in err.value.message


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[cache\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.load(bad, env={})
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml", env={})


@pytest.mark.parametrize(("key", "text", "value"), [
    ("max_size_bytes", "10GiB", 10 * 1024**3),
    ("max_size_bytes", "500MB", 500 * 1000**2),
    ("max_size_bytes", "2g", 2 * 1024**3),
    ("min_free_bytes", "1_048_576", 1048576),
    ("memory_ttl_seconds", "250ms", 0.25),
    ("heuristic_max_seconds", "1h", 3600.0),
    ("heuristic_max_seconds", "5m", 300.0),
    ("stale_if_error_seconds", "30s", 30.0),
])
def test_sizes_and_durations_take_units(key: str, text: str, value: float) -> None:
    assert getattr(config.from_dict({"cache": {key: text}}).cache, key) == value
    env = {f"MEDIAPROXY_CACHE_{key.upper()}": text}
    assert getattr(config.from_dict({}, env).cache, key) == value


def test_non_key_variables_with_the_prefix_are_allowed() -> None:
    env = {"MEDIAPROXY_CONFIG": "/x.toml", "MEDIAPROXY_ORIGIN_TOKEN": "t",
           "MEDIAPROXY_TEST_REQUIRE_REDIS": "1"}
    assert config.from_dict({}, env) == config.from_dict({})


def test_the_worker_hand_over_round_trips() -> None:
    c = config.from_dict({"server": {"workers": 3}, "cache": {"max_size_bytes": "2GiB"}})
    assert config.from_json(config.to_json(c)) == c
    with pytest.raises(ConfigError):
        config.from_json("not json")


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        config.load(tmp_path, env={})
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[server]\nvia = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(latin, env={})


def test_default_path_prefers_the_environment(tmp_path: Path) -> None:
    assert config.default_path({"MEDIAPROXY_CONFIG": "/a.toml"}) == "/a.toml"
    expected = str(config.DEFAULT_PATH) if config.DEFAULT_PATH.exists() else None
    assert config.default_path({}) == expected
