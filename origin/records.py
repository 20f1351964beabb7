"""The origin's records: items' revisions, access policies, publish results, and the one error
the store raises for a client.

Rule: plain values, no I/O; a revision row becomes a `Revision` only through `revision_from_row`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class Access(StrEnum):
    """The access policy of an item, sent to clients as `X-Media-Access`."""

    PUBLIC = "public"
    PROTECTED = "protected"


class Unset(Enum):
    """Marks an optional update argument as "leave unchanged" where None means "reset"."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class Revision:
    """One published revision of an item, with the item's current access and cache policy."""

    id: int
    path: str
    revision: int
    content_type: str
    size_bytes: int
    sha256: str
    last_modified: int  # unix seconds
    access: Access
    cache_control: str | None  # None: the application's default

    @property
    def etag(self) -> str:
        # Strong: the revision number alone is unique per path, the digest makes it self-checking.
        return f'"r{self.revision}-{self.sha256[:16]}"'


@dataclass(frozen=True, slots=True)
class Published:
    revision: Revision
    created: bool  # no live revision existed before (new or previously deleted item)
    superseded_id: int | None  # the revision row this publish replaced


@dataclass(frozen=True, slots=True)
class StoredRevision:
    """A revision row as stored, live or superseded (for inspection and tests)."""

    id: int
    revision: int
    superseded: bool


class StoreError(Exception):
    """A request the store refuses (the message is fit for a client)."""


REVISION_COLUMNS = (
    "r.id, r.path, r.revision, r.content_type, r.size, r.sha256, r.last_modified,"
    " i.access, i.cache_control"
)


def revision_from_row(row: tuple[object, ...]) -> Revision:
    rid, path, revision, content_type, size, sha256, last_modified, access, cache_control = row
    assert isinstance(rid, int) and isinstance(path, str) and isinstance(revision, int)
    assert isinstance(content_type, str) and isinstance(size, int) and isinstance(sha256, str)
    assert isinstance(last_modified, int) and isinstance(access, str)
    assert cache_control is None or isinstance(cache_control, str)
    return Revision(
        id=rid,
        path=path,
        revision=revision,
        content_type=content_type,
        size_bytes=size,
        sha256=sha256,
        last_modified=last_modified,
        access=Access(access),
        cache_control=cache_control,
    )
