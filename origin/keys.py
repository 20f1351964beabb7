"""The typed application state shared by the origin's handlers, one `web.AppKey` per object.

Rule: handlers reach state only through these keys; `origin.app` re-exports STATS_KEY and
FAULTS_KEY, which tests use to read counts and set faults in-process.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from origin.faults import FaultRules
from origin.grants import SessionGrants
from origin.library import Library
from origin.purge import PurgeNotifier
from origin.stats import RequestStats


@dataclass(frozen=True, slots=True)
class OriginSettings:
    admin_token: str | None  # None: the admin API answers 403
    default_cache_control: str  # for items that set none


SETTINGS_KEY = web.AppKey("origin_settings", OriginSettings)
STATS_KEY = web.AppKey("origin_stats", RequestStats)
FAULTS_KEY = web.AppKey("origin_faults", FaultRules)
# Opened at start-up: the database is opened on its own threads, never on the event loop.
LIBRARY_KEY = web.AppKey("origin_library", Library)
PURGE_KEY = web.AppKey("origin_purge", PurgeNotifier)
SESSIONS_KEY = web.AppKey("origin_sessions", SessionGrants)
