"""The admin console: server-rendered pages on the admin listener at /console/ (routes), their
live data (live, purges), sign-in (sessions) and escaped HTML (markup, views)."""
