"""Entry script of the PyInstaller bundle: the ``mldesk`` command (GUI with no
arguments, the CLI otherwise; ``mldesk __supervise ID`` for detached supervisors,
which a frozen app starts by re-executing itself)."""

import sys

from mldesk.launcher import main

if __name__ == "__main__":
    sys.exit(main())
