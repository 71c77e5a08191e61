"""`python -m kissvdb`: the same as the `kissvdb` command."""

from kissvdb.cli import main

raise SystemExit(main())
