"""``python -m workers.cli`` is ``chatops``."""

from workers.cli.main import main

raise SystemExit(main())
