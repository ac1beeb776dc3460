"""``EngineError``: a user-facing error of the engine (a ``UserError``)."""

from __future__ import annotations

from mldesk.agent.errors import UserError


class EngineError(UserError):
    """A user-facing error: the message says what happened and what to do."""
