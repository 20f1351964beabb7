"""Revalidation: the conditional fields that ask the origin about a stored response, and what a
304 changes in it.

Rule: a 304 updates the stored response's fields (RFC 9111 §4.3.4) except the framing ones,
and never puts a per-client field into it: `Set-Cookie` and the fields the 304's (or the stored
response's) Cache-Control names with `private=` or `no-cache=` (RFC 9111 §5.2.2.4, §5.2.2.7)
go to the client that asked, only.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.policy.headers import Headers, get, parse_cache_control, response_cache_control

# RFC 9111 §4.3.4: fields a 304 must not overwrite in the stored response.
KEEP_ON_304 = frozenset({"content-length", "content-encoding", "content-range",
                         "transfer-encoding"})
# Fields addressed to one client whatever Cache-Control says (a shared cache never keeps them).
PER_CLIENT = frozenset({"set-cookie", "set-cookie2"})


def conditional_fields(stored: Headers) -> list[tuple[str, str]]:
    """The conditional request fields that revalidate `stored` (RFC 9111 §4.3.1)."""
    fields = []
    etag = get(stored, "etag")
    if etag is not None:
        fields.append(("If-None-Match", etag))
    last_modified = get(stored, "last-modified")
    if last_modified is not None:
        fields.append(("If-Modified-Since", last_modified))
    return fields


def per_client_names(response: Headers) -> frozenset[str]:
    """Lower-case names of the fields in `response` that are for its own client only."""
    names = set(PER_CLIENT)
    for cc in (response_cache_control(response),
               parse_cache_control(v for k, v in response if k.lower() == "cache-control")):
        for directive in ("private", "no-cache"):
            argument = cc.arg(directive)
            if argument:
                names.update(n.strip().lower() for n in argument.split(",") if n.strip())
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class Merged:
    stored: tuple[tuple[str, str], ...]  # the updated stored response's fields
    client_only: tuple[tuple[str, str], ...]  # for the client that sent the revalidation


def for_storage(response: Headers, shared: frozenset[str] = frozenset()) -> Merged:
    """A full response split into what may be stored (and served to anyone) and what goes to
    the client that fetched it only: the fields its `no-cache="..."` / `private="..."` name
    (RFC 9111 §5.2.2.4: not to be sent to another request without revalidation). Fields in
    `shared` (lower-case: the access policy) are always kept: dropping them would make a
    protected object look public."""
    private = per_client_names(response) - PER_CLIENT - shared  # Set-Cookie: never stored
    if not private:
        return Merged(tuple(response), ())
    return Merged(tuple((k, v) for k, v in response if k.lower() not in private),
                  tuple((k, v) for k, v in response if k.lower() in private))


def merge_304(stored: Headers, fresh: Headers, shared: frozenset[str] = frozenset()
              ) -> Merged:
    """RFC 9111 §4.3.4: fields in the 304 replace the stored ones of the same name; per-client
    fields of the 304 are set aside for its own client, and any the stored response somehow
    holds are dropped. Fields in `shared` are never per-client (see `for_storage`)."""
    private = (per_client_names(fresh) | per_client_names(stored)) - shared
    updates = [(k, v) for k, v in fresh if k.lower() not in KEEP_ON_304]
    for_all = [(k, v) for k, v in updates if k.lower() not in private]
    replaced = {k.lower() for k, _ in for_all}
    kept = [(k, v) for k, v in stored if k.lower() not in replaced and k.lower() not in private]
    client_only = tuple((k, v) for k, v in updates if k.lower() in private)
    return Merged(tuple(kept + for_all), client_only)
