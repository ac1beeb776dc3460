"""The root of every error a user can cause (and fix): ``UserError``.

Front ends catch ``UserError`` the same way: the CLI prints ``str(exc)`` as one line and
exits non-zero, the window shows it in a banner or dialog. Anything else that escapes is
a bug and is logged with its traceback. It lives on the lowest floor (stdlib only) so
that every floor, the shipped agent included, can raise it.

Also the runners' ``AgentError`` (``runner`` and ``containers`` raise it): not a user's
error but an execution's, recorded as its reason in ``status.json``.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a bad ml.yaml, an unknown id, a host that is down."""

    #: exit status for the CLI (2: usage or configuration, 1: everything else)
    exit_code = 1


class AgentError(Exception):
    """A failure to report as the execution's reason (``exit_code`` when one is known)."""

    def __init__(self, message, exit_code=None):
        Exception.__init__(self, message)
        self.exit_code = exit_code


class Withdrawn(AgentError):
    """A sweep's trial stopped while it waited for its job array (``slurm.Withdrawn``)."""

    def __init__(self):
        AgentError.__init__(self, "stopped before the program started")
