"""Every state of a request and every transition between them is listed here.

Rule (as h11 keeps its state machine in one place): a path module does one I/O step and
returns the next step; it never calls another path, never writes a response and never sets
the cache status. Only `driver.py` chooses what runs next, and only `answer.py` writes a
response and records the cache status, exactly once.

| step | made by | next (by) |
|---|---|---|
| `Lookup` | `driver` | `Fresh`, `Refresh`, `Miss` (`hit.lookup`) |
| `Refresh` | `hit.lookup` | `Stale` UPDATING, a background refresh started (`revalidate.later`) |
| `Miss(stale, status, round)` | `hit.lookup`, `hit.current` | `Join`, `Follow`, `Claimed`, |
| | | `Current`, `Uncached`; `Uncached` after `ROUNDS` rounds (`collapse.choose`) |
| `Follow` | `collapse.choose` | `Join`, `Current` (claim released), `Uncached` (`follow.wait`) |
| `Current` | `collapse.choose`, `follow.wait` | `Fresh`, `Miss(round + 1)` (`hit.current`) |
| `Claimed(stale, status)` | `collapse.choose` | `Fresh` (committed meanwhile), `Revalidated`, |
| | | `Stale` STALE (origin failed), `Filling`, `Uncached` (`miss.ask_origin`) |
| `Uncached(origin=None)` | `collapse`, `follow` | `Uncached(origin)` (`passthrough.fetch`) |
| `Convert(image, round)` | `driver` (`?preset=`) | `Fresh` (stored conversion, still made from |
| | | the current source), `ConvertRefresh` (soft-purged), `ConvertMiss` (`convert.lookup`) |
| `ConvertRefresh` | `convert.lookup` | `Stale` UPDATING, a background remake started |
| | | when the worker's remake budget allows (`convert.remake_later`) |
| `ConvertMiss` | `convert.lookup` | `ConvertFollow`, `Convert(round + 1)` (in-process claimant |
| | | done), `ConvertClaimed`; unclaimed after `ROUNDS` rounds (`convert.claim`) |
| `ConvertFollow` | `convert.claim` | `Convert(round + 1)` (claim released) (`convert.wait`) |
| `ConvertClaimed` | `convert.claim` | `Source` (the original through our own listener: |
| | | its normal cache path) (`convert.fetch_source`) |
| `Source` | `convert.fetch_source` | `Converted` (converted and stored) (`convert.make`) |
| terminal | | `answer.send`: `Fresh` HIT, `Stale` UPDATING/STALE, `Revalidated`, `Join` HIT, |
| | | `Filling` MISS/EXPIRED, `Uncached` PASS (MISS for a HEAD miss), `Converted` MISS |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.policy.headers import Headers
from proxy.status import CacheStatus

# Values typed `Any` are the store's and origin client's objects (CachedBody, FrontEntry,
# Fill, RemoteFill, OriginResponse): steps are plain records, imported by every path.


@dataclass(frozen=True, slots=True)
class Lookup:
    pass


ROUNDS = 3  # a request goes round Miss -> Follow/Current -> Miss at most this often


@dataclass(frozen=True, slots=True)
class Miss:
    stale: Any  # CachedBody to revalidate, or None
    status: CacheStatus = CacheStatus.MISS
    round: int = 0
    # The claim to collapse on: the key, or (after a purge that landed during a fill, whose
    # old fill still holds the key's claim) a generation of it that all requests after that
    # purge share, so they collapse on one new fill instead of each going to the origin.
    claim_key: str = ""


@dataclass(frozen=True, slots=True)
class Refresh:
    """A stale body that may be served while it is revalidated in the background."""

    body: Any  # CachedBody
    age: float


@dataclass(frozen=True, slots=True)
class Follow:
    """Another process (or request) holds the claim: follow its fill or its outcome."""

    stale: Any
    status: CacheStatus
    round: int
    claim_key: str = ""


@dataclass(frozen=True, slots=True)
class Current:
    """Someone else just stored or refreshed the key: serve that if this request may."""

    stale: Any
    status: CacheStatus
    round: int
    claim_key: str = ""


@dataclass(frozen=True, slots=True)
class Claimed:
    stale: Any
    status: CacheStatus


@dataclass(frozen=True, slots=True)
class Fresh:
    body: Any  # CachedBody, or FrontEntry for the memory tier
    age: float
    status: CacheStatus = CacheStatus.HIT
    ttl: float | None = None  # freshness left, when the step already judged it


@dataclass(frozen=True, slots=True)
class Stale:
    body: Any  # CachedBody
    age: float
    status: CacheStatus  # UPDATING (refresh under way) or STALE (origin failed)


@dataclass(frozen=True, slots=True)
class Revalidated:
    body: Any  # CachedBody with its refreshed metadata
    age: float
    client_only: Headers = ()  # the 304's per-client fields, for this client only
    status: CacheStatus = CacheStatus.REVALIDATED


@dataclass(frozen=True, slots=True)
class Join:
    fill: Any  # Fill or RemoteFill
    status: CacheStatus = CacheStatus.HIT


@dataclass(frozen=True, slots=True)
class Filling:
    fill: Any  # the Fill this request started
    status: CacheStatus
    client_only: Headers = field(default=())


@dataclass(frozen=True, slots=True)
class Uncached:
    """Ask the origin for this request as it is and relay the answer; nothing is stored
    (`origin` set: the claimant already has the response)."""

    status: CacheStatus
    origin: Any = None
    bypass: bool = False  # the cache was not consulted (hit-for-pass, no usable store)


@dataclass(frozen=True, slots=True)
class Convert:
    """A conversion of this request's source (`?preset=`): is a usable one stored?"""

    image: Any  # policy.images.ImageRequest
    round: int = 0


@dataclass(frozen=True, slots=True)
class ConvertRefresh:
    """A soft-purged conversion: served as it is while it is remade."""

    body: Any  # CachedBody
    age: float
    image: Any
    claim_key: str


@dataclass(frozen=True, slots=True)
class ConvertMiss:
    image: Any
    claim_key: str  # one conversion at a time per key, across every process
    round: int = 0


@dataclass(frozen=True, slots=True)
class ConvertFollow:
    image: Any
    claim_key: str
    round: int


@dataclass(frozen=True, slots=True)
class ConvertClaimed:
    image: Any


@dataclass(frozen=True, slots=True)
class Source:
    """The original's bytes and fields, as our own listener served them."""

    image: Any
    body: bytes
    headers: Headers
    format: str  # the negotiated output format
    key: str  # the conversion's key


@dataclass(frozen=True, slots=True)
class Converted:
    body: bytes
    headers: Headers
    stored: bool
    status: CacheStatus = CacheStatus.MISS


def generation(key: str, ban_id: int) -> str:
    """The claim key requests share after ban `ban_id` covered the fill holding `key`'s
    claim (that fill keeps the key's claim for its own readers)."""
    return f"{key}\x1e#{ban_id}"


Terminal = Fresh | Stale | Revalidated | Join | Filling | Uncached | Converted
Step = (Lookup | Refresh | Miss | Follow | Current | Claimed | Convert | ConvertRefresh
        | ConvertMiss | ConvertFollow | ConvertClaimed | Source | Terminal)
