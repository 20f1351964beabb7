"""HTML building for the console: every value is escaped unless it is already markup.

Rule: `Markup` is only ever made here, from literal templates (`tag`) whose values pass through
`escape`; nothing else in the console writes HTML. So a URL, tag, node name or header value
from the cache can never become markup on an admin's page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable


class Markup(str):
    """Text that is already HTML (a literal template with escaped values)."""

    __slots__ = ()

    def __add__(self, other: str) -> Markup:  # plain text added to markup is escaped
        return Markup(str.__add__(self, escape(other)))


def escape(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def tag(template: str, **values: object) -> Markup:
    """`template` (a literal, with `{name}` fields) with every value escaped."""
    return Markup(template.format(**{k: escape(v) for k, v in values.items()}))


def join(parts: Iterable[object]) -> Markup:
    return Markup("".join(escape(p) for p in parts))


def table(name: str, caption: str, headings: Iterable[str],
          rows: Iterable[Iterable[object]], *, live: bool = False) -> Markup:
    """A table whose body the page script can redraw (`data-table`) from a JSON poll."""
    head = join(tag("<th scope=\"col\">{h}</th>", h=h) for h in headings)
    body = join(tag("<tr>{cells}</tr>", cells=join(tag("<td>{c}</td>", c=c) for c in row))
                for row in rows)
    return tag('<table><caption>{caption}</caption><thead><tr>{head}</tr></thead>'
               '<tbody data-table="{name}"{live}>{body}</tbody></table>',
               caption=caption, head=head, name=name, body=body,
               live=Markup(' aria-live="polite"') if live else Markup(""))


def field(name: str, value: object) -> Markup:
    """A value the page script can update (`data-field`) from a JSON poll."""
    return tag('<span data-field="{name}">{value}</span>', name=name, value=value)


def page(title: str, body: Markup, *, csrf: str | None, script: bool = False,
         poll: str | None = None) -> Markup:
    """A whole console page: navigation and a sign-out form when signed in."""
    nav = Markup("")
    if csrf is not None:
        nav = tag(
            '<nav aria-label="Console"><ul>'
            '<li><a href="/console/">Overview</a></li>'
            '<li><a href="/console/purge">Purge</a></li>'
            '<li><a href="/console/lookup">Look up a URL</a></li>'
            '<li><form method="post" action="/console/logout">'
            '<input type="hidden" name="csrf" value="{csrf}">'
            '<button type="submit">Sign out</button></form></li></ul></nav>', csrf=csrf)
    scripts = Markup('<script src="/console/static/console.js" defer></script>') if script \
        else Markup("")
    return tag(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>{title} · mediaproxy console</title>'
        '<link rel="stylesheet" href="/console/static/console.css">{scripts}</head>'
        '<body><header><p class="brand">mediaproxy console</p>{nav}</header>'
        '<main id="main"{poll}><h1>{title}</h1>{body}</main></body></html>\n',
        title=title, scripts=scripts, nav=nav, body=body,
        poll=tag(' data-poll="{url}"', url=poll) if poll else Markup(""))
