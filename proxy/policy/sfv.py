"""Structured Field Values (RFC 9651): the parsing that Cache-Groups, Cache-Group-Invalidation,
Repr-Digest and Content-Digest need, and the serialising Cache-Status needs.

Rule: strict, as §4.2 requires: any syntax error fails the whole field (`None`), and the
caller then ignores the field as if it were absent. Lines of one field are joined with ", "
before parsing (§4.2). Item values are Python values: str (String), `Token`, int, float,
bool, bytes (Byte Sequence); Dates and Display Strings are not needed here and fail.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Token:
    value: str


BareItem = str | Token | int | float | bool | bytes
Params = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True, slots=True)
class Item:
    value: BareItem
    params: Params = ()


@dataclass(frozen=True, slots=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params = ()


Member = Item | InnerList

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")


class _Invalid(Exception):
    pass


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip_sp(self) -> None:
        while self.peek() == " ":
            self.i += 1

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t"):
            self.i += 1

    def done(self) -> bool:
        return self.i >= len(self.s)

    def members(self) -> list[Member]:
        out: list[Member] = []
        while not self.done():
            out.append(self.member())
            self.skip_ows()
            if self.done():
                return out
            if self.peek() != ",":
                raise _Invalid
            self.i += 1
            self.skip_ows()
            if self.done():
                raise _Invalid  # trailing comma
        return out

    def member(self) -> Member:
        if self.peek() == "(":
            return self.inner_list()
        return self.item()

    def inner_list(self) -> InnerList:
        self.i += 1
        items: list[Item] = []
        while not self.done():
            self.skip_sp()
            if self.peek() == ")":
                self.i += 1
                return InnerList(tuple(items), self.params())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise _Invalid
        raise _Invalid

    def item(self) -> Item:
        return Item(self.bare_item(), self.params())

    def params(self) -> Params:
        out: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.i += 1
            self.skip_sp()
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare_item()
            out[key] = value
        return tuple(out.items())

    def key(self) -> str:
        match = _KEY.match(self.s, self.i)
        if match is None:
            raise _Invalid
        self.i = match.end()
        return match.group()

    def bare_item(self) -> BareItem:
        c = self.peek()
        if c == '"':
            return self.string()
        if c == ":":
            return self.byte_sequence()
        if c == "?":
            return self.boolean()
        if c == "-" or (c.isdigit() and c.isascii()):
            return self.number()
        if c.isascii() and (c.isalpha() or c == "*"):
            match = _TOKEN.match(self.s, self.i)
            assert match is not None
            self.i = match.end()
            return Token(match.group())
        raise _Invalid

    def string(self) -> str:
        self.i += 1
        out: list[str] = []
        while not self.done():
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                escaped = self.peek()
                if escaped not in ('"', "\\") or not escaped:
                    raise _Invalid
                out.append(escaped)
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif not " " <= c <= "~":
                raise _Invalid
            else:
                out.append(c)
        raise _Invalid

    def byte_sequence(self) -> bytes:
        end = self.s.find(":", self.i + 1)
        if end < 0:
            raise _Invalid
        text = self.s[self.i + 1:end]
        if not _BASE64.fullmatch(text):
            raise _Invalid
        self.i = end + 1
        try:
            # RFC 9651 §4.2.7: padding may be missing; be lenient about it, never about
            # characters outside the alphabet.
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Invalid from exc

    def boolean(self) -> bool:
        value = self.s[self.i + 1:self.i + 2]
        if value not in ("0", "1"):
            raise _Invalid
        self.i += 2
        return value == "1"

    def number(self) -> int | float:
        match = _NUMBER.match(self.s, self.i)
        if match is None:
            raise _Invalid
        text = match.group()
        whole = text.lstrip("-").split(".")[0]
        if match.group(1) is None:
            if len(whole) > 15:
                raise _Invalid
            self.i = match.end()
            return int(text)
        if len(whole) > 12 or len(match.group(1)) > 4:
            raise _Invalid
        self.i = match.end()
        return float(text)


def _joined(lines: Iterable[str]) -> str:
    return ", ".join(lines)


def parse_list(lines: Iterable[str]) -> list[Member] | None:
    """An sf-list from the field's lines (already split from other fields); None if invalid."""
    parser = _Parser(_joined(lines))
    try:
        parser.skip_sp()
        out = parser.members()
    except _Invalid:
        return None
    return out


def parse_dictionary(lines: Iterable[str]) -> dict[str, Member] | None:
    """An sf-dictionary; a key given twice keeps its last value (§4.2.2). None if invalid."""
    parser = _Parser(_joined(lines))
    out: dict[str, Member] = {}
    try:
        parser.skip_sp()
        while not parser.done():
            key = parser.key()
            if parser.peek() == "=":
                parser.i += 1
                member = parser.member()
            else:
                member = Item(True, parser.params())
            out[key] = member
            parser.skip_ows()
            if parser.done():
                break
            if parser.peek() != ",":
                return None
            parser.i += 1
            parser.skip_ows()
            if parser.done():
                return None
    except _Invalid:
        return None
    return out


def string_list(lines: Iterable[str]) -> list[str] | None:
    """A List of Strings (parameters ignored); None when invalid or any member is not one."""
    members = parse_list(lines)
    if members is None:
        return None
    out: list[str] = []
    for member in members:
        if not isinstance(member, Item) or not isinstance(member.value, str):
            return None
        out.append(member.value)
    return out


def serialize_string(value: str) -> str:
    """An sf-string; characters outside printable ASCII are replaced by "?"."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in value)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize_token_or_string(value: str) -> str:
    """A Token when `value` is one, else a String (Cache-Status names a cache either way)."""
    return value if _TOKEN.fullmatch(value) else serialize_string(value)


def serialize_bytes(value: bytes) -> str:
    return ":" + base64.b64encode(value).decode("ascii") + ":"
