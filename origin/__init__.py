"""The reference media origin: an aiohttp service that stores media revisions in SQLite.

The proxy never imports it; it is the demo's and the tests' origin, and an example for origin
authors. Entry points: `origin.app.create_app` and the `mediaproxy-origin` command.
"""
