"""``python -m mldesk``: the same as the ``mldesk`` command."""

from mldesk.launcher import main

raise SystemExit(main())
