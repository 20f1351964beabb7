"""Holes found by the second attack review (image conversions over HTTP, the admin console).

Each test fails on purpose until the hole it names is closed; real proxy, real origin, raw
sockets where a client library would normalise the attack."""

from __future__ import annotations

import asyncio

from proxy.console.sessions import MAX_FAILURES
from tests.conftest import Origin
from tests.integration.test_console import Console, console
from tests.integration.test_image_conversions import (
    SECRET,
    NodeFactory,
    jpeg,
    make_node,
    node,
    publish,
)

__all__ = ["console", "make_node", "node"]  # fixtures shared with the image conversion tests


async def test_a_soft_purge_after_an_access_change_does_not_serve_the_old_conversion(
        make_node: NodeFactory, origin: Origin) -> None:
    """An item made protected, then soft-purged: its stored conversion is served as it is
    (UPDATING) with the access field it was made with, to anyone, token or not, until the
    background remake lands (never, if remakes are over budget or fail). The original itself
    revalidates before it is served, so it is 401 at once."""
    node = await make_node(auth={"keys": f"k1={SECRET}"})
    await publish(origin, "/img/turned2.jpg", jpeg())
    assert (await node.get("/img/turned2.jpg?preset=square")).status == 200
    await publish(origin, "/img/turned2.jpg", jpeg(), X_Media_Access="protected")
    assert await node.purge(url="/img/turned2.jpg", soft=True) == 200
    conversion = await node.get("/img/turned2.jpg?preset=square")
    assert conversion.status == 401, (conversion.status, conversion.headers.get("X-Cache"))


async def test_concurrent_guesses_cannot_step_past_the_sign_in_lockout(console: Console
                                                                       ) -> None:
    """The lockout is checked before the form body is read and counted after it: guesses
    whose heads arrive first and bodies later (raw sockets, parallel connections) are all let
    through the lockout check, so one address gets as many guesses as it opens connections."""
    guesses = 8 * MAX_FAILURES
    port = console.admin.server.port
    assert port is not None
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(guesses)]
    bodies = [f"token=guess-{i:04d}".encode() for i in range(guesses)]
    for (_, writer), body in zip(connections, bodies, strict=True):
        writer.write(b"POST /console/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        await writer.drain()
    await asyncio.sleep(0.5)  # every head read (not a threshold: more time only helps the attack)
    for (_, writer), body in zip(connections, bodies, strict=True):
        writer.write(body)
        await writer.drain()
    statuses = []
    for reader, writer in connections:
        line = await asyncio.wait_for(reader.readline(), 10)
        statuses.append(int(line.split()[1]))
        writer.close()
    judged = statuses.count(401)
    assert judged <= MAX_FAILURES, f"{judged} of {guesses} guesses were checked: {statuses}"
