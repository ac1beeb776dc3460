"""The root of every error a user can cause (and fix): ``UserError``.

Front ends catch ``UserError`` the same way: the CLI prints ``str(exc)`` as one line and
exits non-zero, the window shows it in a banner or dialog. Anything else that escapes is
a bug and is logged with its traceback. It lives on the lowest floor (stdlib only) so
that every floor, the shipped agent included, can raise it.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a bad ml.yaml, an unknown id, a host that is down."""

    #: exit status for the CLI (2: usage or configuration, 1: everything else)
    exit_code = 1
