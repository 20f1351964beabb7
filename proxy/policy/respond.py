"""Plan the answer to a GET/HEAD from a stored (or filling) representation: status, headers,
and which bytes of the body to send.

Rule: validators and ranges are the origin's (stored ETag / Last-Modified); headers are the
stored end-to-end fields with only framing (Content-Length, Content-Range) and Age recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from proxy.policy import conditional, ranges
from proxy.policy.headers import Headers, get

# Recomputed per response, never copied from storage (Age only when we compute one, and
# Content-Range only when we build a 206/416 ourselves).
_FRAMING = frozenset({"content-length", "transfer-encoding"})
# RFC 9110 §15.4.5: a 304 describes no body, so body framing and encoding are left out.
_NOT_IN_304 = _FRAMING | {"content-encoding", "content-type", "content-language",
                          "content-digest"}
# RFC 9530 §2: Content-Digest is over the content sent, so it is wrong for a 206 we cut from
# the stored 200 (Repr-Digest, over the whole representation, stays right and is kept).
_NOT_IN_206 = frozenset({"content-range", "content-digest"})


@dataclass(frozen=True, slots=True)
class Plan:
    status: int
    headers: tuple[tuple[str, str], ...]  # without Content-Length: the writer sets it
    offset: int
    length: int | None  # bytes of body to send; None = to the end of a body of unknown size
    send_body: bool
    content_length: int | None  # the Content-Length header value, None for unknown


def _age_header(age_seconds: float | None) -> list[tuple[str, str]]:
    if age_seconds is None:
        return []
    return [("Age", str(max(0, math.floor(age_seconds))))]  # RFC 9111 §5.1


def plan(
    method: str,
    request: Headers,
    status: int,
    stored: Headers,
    size: int | None,
    age_seconds: float | None = None,
) -> Plan:
    head = method == "HEAD"
    drop = _FRAMING | ({"age"} if age_seconds is not None else frozenset())
    base = [(k, v) for k, v in stored if k.lower() not in drop] + _age_header(age_seconds)
    if status != 200:
        return Plan(status, tuple(base), 0, size, not head, size)

    validators = conditional.Validators.from_headers(stored)
    outcome = conditional.evaluate(method, request, validators)
    if outcome is conditional.Precondition.NOT_MODIFIED:
        headers = [(k, v) for k, v in stored if k.lower() not in _NOT_IN_304]
        return Plan(304, tuple(headers + _age_header(age_seconds)), 0, 0, False, None)
    if outcome is conditional.Precondition.FAILED:
        return Plan(412, tuple(_age_header(age_seconds)), 0, 0, False, 0)

    has_accept_ranges = get(stored, "accept-ranges") is not None
    if size is not None and not has_accept_ranges:
        base.append(("Accept-Ranges", "bytes"))
    if size is None:
        return Plan(200, tuple(base), 0, None, not head, None)
    decision = ranges.select(
        method, get(request, "range"), get(request, "if-range"), size,
        validators.etag, validators.last_modified,
    )
    if not isinstance(decision, ranges.Full):
        base = [(k, v) for k, v in base if k.lower() not in _NOT_IN_206]
    match decision:
        case ranges.Partial():
            partial = (*base, ("Content-Range", decision.content_range(size)))
            return Plan(206, partial, decision.start, decision.length, True, decision.length)
        case ranges.Unsatisfiable():
            unsatisfiable = (*base, ("Content-Range", decision.content_range(size)))
            return Plan(416, unsatisfiable, 0, 0, False, 0)
        case ranges.Full():
            return Plan(200, tuple(base), 0, size, not head, size)
