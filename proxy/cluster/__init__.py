"""Purges across nodes: Redis pub/sub tells the others, a ban list in Redis the ones that missed it.

Rule: a purge is applied to this node's store first and published second, so Redis can delay or
lose a remote purge but never a local one. Every Redis or socket error becomes
`ClusterUnavailable` (link.py; `"redis unreachable"` in a purge answer): the node keeps serving
and reconnects by itself. One `Cluster` per node, where the admin listener lives (the single
process or the supervisor): bans go to the node's cache.db, which its workers share.

Modules by job: node.py (`Cluster`: the connection loop), membership.py (heartbeats, live
nodes), publishing.py (publish, acknowledgements, purge answers), receiving.py (purges from
other nodes, live and caught up after a restart), messages.py (what travels and is answered),
link.py (the Redis connection and its keys).

Redis layout (`<ch>` is `cluster.channel`):

    <ch>                      pub/sub: one JSON purge per message (`Purge.to_json`)
    <ch>:acks                 pub/sub: {"id", "node"} when a node has applied a purge
    <ch>:bans                 sorted set: purge JSON scored by `created`, trimmed to ban_ttl
    <ch>:applied:<node>       sorted set: ids of purges <node> has applied (its acks), ban_ttl
    <ch>:node:<node>          string: heartbeat JSON, expires after node_ttl (live nodes)
    <ch>:nodes                hash: node -> last heartbeat time (known nodes, for "not live")
"""

from proxy.cluster.link import ClusterUnavailable, redact
from proxy.cluster.messages import Acks, Gauges, NodeState, Published, Purge
from proxy.cluster.node import Cluster

__all__ = ["Acks", "Cluster", "ClusterUnavailable", "Gauges", "NodeState", "Published", "Purge",
           "redact"]
