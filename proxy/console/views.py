"""The console's pages, as escaped HTML (`proxy.console.markup`); no I/O here."""

from __future__ import annotations

from typing import Any

from proxy.console.live import Live, size
from proxy.console.markup import Markup, field, join, page, table, tag
from proxy.console.purges import Made, summary

KINDS = (("url", "One URL"), ("prefix", "Everything under a path prefix"),
         ("tag", "Everything with a tag (Surrogate-Key)"), ("all", "Everything"))


def _hidden(name: str, value: object) -> Markup:
    return tag('<input type="hidden" name="{name}" value="{value}">', name=name, value=value)


def _message(text: str, kind: str = "error") -> Markup:
    if not text:
        return Markup("")
    role = "alert" if kind == "error" else "status"
    return tag('<p class="{kind}" role="{role}">{text}</p>', kind=kind, role=role, text=text)


def login(error: str = "", *, disabled: bool = False) -> Markup:
    if disabled:
        body = _message("The console is disabled: set admin.token in the configuration "
                        "(and reload) to enable it.")
    else:
        body = tag(
            '{error}<form method="post" action="/console/login" class="stack">'
            '<label for="token">Admin token</label>'
            '<input id="token" name="token" type="password" autocomplete="current-password"'
            ' required autofocus>'
            '<button type="submit">Sign in</button></form>'
            '<p class="hint">The token is <code>admin.token</code> from the configuration.'
            ' The session lasts 30 minutes idle, 12 hours at most.</p>',
            error=_message(error))
    return page("Sign in", body, csrf=None)


def overview(live: Live, csrf: str) -> Markup:
    f = live.fields
    facts = (("Hit ratio (since start)", "hit_ratio"), ("Entries", "entries"),
             ("Store size (of the budget)", "store"),
             ("Superseded bodies held for open streams", "superseded"),
             ("Origin fetches", "origin_fetches"), ("Fills running", "fills"),
             ("Bans still sweeping", "bans"))
    body = tag(
        '<p class="error" role="alert" data-field="problem">{problem}</p>'
        '<dl class="facts">{facts}</dl>{requests}{nodes}'
        '<p class="hint">Updated {updated}. <a href="/console/">Refresh</a>'
        ' (the page refreshes itself every 2 seconds with JavaScript on).</p>',
        problem=f.get("problem", ""),
        facts=join(tag("<dt>{label}</dt><dd>{value}</dd>", label=label,
                       value=field(name, f.get(name, "—"))) for label, name in facts),
        requests=table("requests", "Requests by cache status",
                       ("cache status", "since start", "per second"),
                       live.tables.get("requests", [])),
        nodes=table("nodes", "Nodes", ("node", "last heartbeat", "state"),
                    live.tables.get("nodes", [])),
        updated=field("updated", f.get("updated", "")))
    return page("Overview", body, csrf=csrf, script=True, poll="/console/api/overview")


def purge_form(csrf: str, error: str = "", kind: str = "prefix", value: str = "",
               soft: bool = False) -> Markup:
    radios = join(tag(
        '<div><input type="radio" id="kind-{k}" name="kind" value="{k}"{checked}>'
        '<label for="kind-{k}">{label}</label></div>', k=k, label=label,
        checked=Markup(" checked") if k == kind else Markup(""))
        for k, label in KINDS)
    body = tag(
        '{error}<form method="post" action="/console/purge" class="stack">{csrf}'
        '<fieldset><legend>What to purge</legend>{radios}</fieldset>'
        '<label for="value">URL, path prefix or tag (empty for everything)</label>'
        '<input id="value" name="value" type="text" value="{value}" spellcheck="false"'
        ' placeholder="/media/campaign-2026/">'
        '<div><input type="checkbox" id="soft" name="soft" value="1"{soft}>'
        '<label for="soft">Soft: mark stale, the next request revalidates (a 304 keeps the'
        ' body)</label></div>'
        '<button type="submit">Review purge</button></form>'
        '<p class="hint">Nothing is purged until you confirm on the next page, which shows'
        ' how many entries and bytes the purge covers on this node.</p>',
        error=_message(error), csrf=_hidden("csrf", csrf), radios=radios, value=value,
        soft=Markup(" checked") if soft else Markup(""))
    return page("Purge", body, csrf=csrf)


def purge_confirm(csrf: str, kind: str, value: str, soft: bool, entries: int,
                  covered: int) -> Markup:
    label = dict(KINDS)[kind]
    body = tag(
        '<p>{label}{value}{soft}.</p>'
        '<p class="covers" role="status">On this node it covers <strong data-covers-entries>'
        '{entries}</strong> entries, <strong>{bytes}</strong> ({exact} bytes) of bodies.</p>'
        '<form method="post" action="/console/purge" class="stack">{hidden}'
        '<button type="submit">Purge {entries} entries on every node</button></form>'
        '<p><a href="/console/purge">Cancel</a></p>',
        label=label, value=tag(": <code>{v}</code>", v=value) if value else "",
        soft=" (soft)" if soft else "", entries=entries, bytes=size(covered), exact=covered,
        hidden=join([_hidden("csrf", csrf), _hidden("kind", kind), _hidden("value", value),
                     _hidden("soft", "1" if soft else ""), _hidden("confirm", "1")]))
    return page("Confirm purge", body, csrf=csrf)


def purge_progress(made: Made, live: Live, csrf: str) -> Markup:
    f = live.fields
    body = tag(
        '<p>Purged {what}{soft}: {summary}.</p>'
        '<dl class="facts"><dt>State</dt><dd>{state}</dd>'
        '<dt>Sweep on this node</dt><dd>{sweep}</dd></dl>{nodes}'
        '<p class="hint">Updated {updated}. <a href="/console/purges/{id}">Refresh</a>'
        ' (followed live with JavaScript on, until every node has acknowledged and the ban'
        ' is retired).</p>',
        what=made.what, soft=" (soft)" if made.ban.soft else "", summary=summary(made),
        state=tag('<span data-field="state" role="status">{s}</span>', s=f.get("state", "")),
        sweep=field("sweep", f.get("sweep", "")),
        nodes=table("nodes", "Acknowledgements", ("node", "state"),
                    live.tables.get("nodes", []), live=True),
        updated=field("updated", f.get("updated", "")), id=made.id)
    return page("Purge progress", body, csrf=csrf, script=True,
                poll=None if live.done else f"/console/api/purges/{made.id}")


def _variant(v: dict[str, Any], csrf: str, url: str) -> Markup:
    rows = (("Variant", v.get("variant") or "the only one"), ("State", v["state"]),
            ("Stored status", v["status"]), ("Size", size(v["size_bytes"])),
            ("Age", f"{v['age_seconds']:.1f} s"),
            ("Freshness left", f"{v['fresh_for_seconds']:.1f} s"),
            ("ETag", v.get("etag") or "—"), ("Last-Modified", v.get("last_modified") or "—"),
            ("Revision", v.get("revision") or "—"), ("Tags", " ".join(v["tags"]) or "—"),
            ("Being streamed now", "yes" if v["being_read"] else "no"))
    return tag('<section class="variant"><h3>{name}</h3><dl class="facts">{facts}</dl>'
               '</section>', name=v.get("variant") or url,
               facts=join(tag("<dt>{k}</dt><dd>{v}</dd>", k=k, v=val) for k, val in rows))


def lookup(csrf: str, url: str, found: dict[str, Any] | None, error: str = "") -> Markup:
    form = tag(
        '{error}<form method="get" action="/console/lookup" class="inline">'
        '<label for="url">URL or path</label>'
        '<input id="url" name="url" type="text" value="{url}" spellcheck="false" required>'
        '<button type="submit">Look up</button></form>', error=_message(error), url=url)
    result = Markup("")
    if found is not None:
        variants = found["variants"]
        purge = join(tag(
            '<form method="post" action="/console/purge" class="inline">{hidden}'
            '<button type="submit">{label}</button></form>', label=label,
            hidden=join([_hidden("csrf", csrf), _hidden("kind", "url"),
                         _hidden("value", found["url"]), _hidden("soft", soft),
                         _hidden("confirm", "1")]))
            for label, soft in (("Purge this URL", ""), ("Soft-purge this URL", "1")))
        result = tag(
            '<h2>{key}</h2><p role="status">{cached}; fills running for it: {fills}.</p>'
            '{variants}{purge}', key=found["url"],
            cached=(f"Cached: {len(variants)} variant(s)" if variants else "Not cached"),
            fills=found["fills_in_progress"],
            variants=join(_variant(v, csrf, found["url"]) for v in variants), purge=purge)
    return page("Look up a URL", join([form, result]), csrf=csrf)


def problem(title: str, text: str, csrf: str | None) -> Markup:
    back = Markup('<p><a href="/console/">Back to the console</a></p>') if csrf else Markup("")
    return page(title, join([_message(text), back]), csrf=csrf)
