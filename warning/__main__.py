"""`python -m warning` runs the `warning` command."""

from warning.cli import main

raise SystemExit(main())
