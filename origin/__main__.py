"""`python -m origin`: the same command line as `mediaproxy-origin`."""

from origin.cli import main

raise SystemExit(main())
