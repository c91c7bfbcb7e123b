"""`python -m spool_tools.stats`: the mta-stats command."""

from spool_tools.stats.cli import console_main

raise SystemExit(console_main())
