"""`python -m proxy ...` is the `mediaproxy` command."""

import sys

from proxy.cli import main

sys.exit(main())
