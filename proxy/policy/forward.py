"""What the origin is sent, and who the client is: request fields chosen by rule, never framed
by the client.

Rule: a request to the origin is framed by what the proxy itself sends (`Content-Length` from
the body it forwards, or none), never by the client's framing fields; a field that can change
the origin's answer is either part of the cache key (Vary) or not forwarded on a shared fill;
the client's address comes from the peer, or from a forwarding header only when the peer is a
trusted proxy (nginx `real_ip`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from proxy.policy.headers import Headers, end_to_end, get_all, split_list

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Message framing belongs to each hop (RFC 9112 §6): the client's Content-Length or
# Transfer-Encoding describe the body *it* sent, and forwarding them on a request we send
# without that body makes the origin read the next request on the connection as this one's
# body (request smuggling). `Expect` asks this hop for a 100 (RFC 9110 §10.1.1).
FRAMING = frozenset({"content-length", "transfer-encoding", "expect"})

# Request fields that origins and frameworks use to build links, pick a scheme, host or
# method, but that are not part of the cache key: forwarding them on a fill lets one client
# poison what everyone else gets. (`x-forwarded-*` as a family, below.)
UNKEYED = frozenset({
    "forwarded", "x-host", "x-original-host", "x-original-url", "x-original-uri",
    "x-rewrite-url", "x-url-scheme", "x-scheme", "front-end-https", "x-real-ip",
    "x-http-method-override", "x-http-method", "x-method-override", "x-client-ip",
    "true-client-ip", "x-cluster-client-ip", "x-proxyuser-ip", "x-originating-ip",
    "x-http-destinationurl", "x-http-host-override", "x-forwarded",
})
_UNKEYED_PREFIXES = ("x-forwarded-",)


def unkeyed(name: str) -> bool:
    """Is `name` (lower-case) a field the proxy never forwards to the origin?"""
    return name in UNKEYED or name.startswith(_UNKEYED_PREFIXES)


def carries_body(fields: Headers) -> bool:
    """Does a request with these fields carry a body (RFC 9112 §6.1, §6.3)? Any
    Transfer-Encoding does; a Content-Length does unless it is exactly zero."""
    if get_all(fields, "transfer-encoding"):
        return True
    return any(value.strip() != "0" for value in get_all(fields, "content-length"))


def origin_request_fields(
    fields: Headers,
    *,
    peer: str | None,
    peer_trusted: bool,
    via: str,
    strip: frozenset[str] = frozenset(),
    body_length: int | None = None,
    token_cookie: str = "",
) -> list[tuple[str, str]]:
    """The fields to send the origin for a request that arrived with `fields`.

    `strip`: lower-case names also left out (conditionals and ranges on a fill, session
    fields when the auth callout owns them). `body_length`: the length of the body the proxy
    forwards, when it knows it (the only Content-Length the origin ever sees). `token_cookie`:
    the cookie that carries a signed-URL token (auth.cookie_name), removed from `Cookie` as
    token parameters are from the query."""
    sent = [(k, v) for k, v in end_to_end(fields)
            if (name := k.lower()) not in FRAMING and name not in strip and name != "via"
            and not unkeyed(name)]
    if token_cookie:
        sent = [(k, v) for k, v in ((k, _without_cookie(v, token_cookie)
                                     if k.lower() == "cookie" else v) for k, v in sent) if v]
    vias = get_all(fields, "via")
    sent.append(("Via", ", ".join([*vias, f"1.1 {via}"])))  # RFC 9110 §7.6.3
    # A forwarding chain is only believed from a trusted proxy; from anyone else it is
    # replaced by the address we see (the origin may log or rate-limit by it).
    chain = get_all(fields, "x-forwarded-for") if peer_trusted else []
    sent.append(("X-Forwarded-For", ", ".join([*chain, peer or "unknown"])))
    if body_length is not None:
        sent.append(("Content-Length", str(body_length)))
    return sent


def _without_cookie(value: str, name: str) -> str:
    """A Cookie field value without the pairs named `name` (RFC 6265 §5.4 syntax)."""
    kept = [pair.strip() for pair in value.split(";")
            if pair.strip() and pair.split("=", 1)[0].strip() != name]
    return "; ".join(kept)


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(text.strip(), strict=False) for text in texts if text)


def in_networks(address: str | None, networks: Sequence[Network]) -> bool:
    if not address or not networks:
        return False
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(parsed in net for net in networks)


@dataclass(frozen=True, slots=True)
class RealIp:
    """Where to find the client's address behind trusted proxies (nginx `real_ip`)."""

    trusted: tuple[Network, ...] = ()
    header: str = "x-forwarded-for"  # or "forwarded", "x-real-ip"

    def client(self, peer: str | None, fields: Headers) -> str | None:
        """The client's address: the peer, unless the peer is trusted; then the nearest
        address in the forwarding header that is not itself a trusted proxy (walking from
        the right, as nginx `real_ip_recursive on` does). Malformed entries end the walk at
        the last address that could be read, never at one a client made up."""
        if not in_networks(peer, self.trusted):
            return peer
        chain = self._chain(fields)
        current = peer
        for address in reversed(chain):
            if _parse_ip(address) is None:
                break
            current = address
            if not in_networks(address, self.trusted):
                break
        return current

    def _chain(self, fields: Headers) -> list[str]:
        values = get_all(fields, self.header)
        if self.header == "forwarded":
            found: list[str] = []
            for value in values:
                for element in split_list(value):
                    for pair in element.split(";"):
                        name, _, param = pair.strip().partition("=")
                        if name.strip().lower() == "for":
                            found.append(_forwarded_node(param.strip()))
            return found
        return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _forwarded_node(value: str) -> str:
    """RFC 7239 §6: `for="[2001:db8::1]:4711"`, `for=192.0.2.1:80`, `for=unknown`."""
    value = value.strip('"')
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
