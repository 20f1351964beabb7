"""Image conversions: libvips (pyvips) in a pool of worker processes.

Rule: libvips only ever runs in the pool's child processes, never in a proxy worker, so a
crash, a stuck decode or a leak in a codec costs one child (replaced) and one request (422),
never the server. `spec` holds the values that cross the process boundary; `convert` is the
child's side (it imports pyvips); `pool` is the asyncio side.
"""
