"""The engine floor: the facade (``Engine``), the supervisor and the read queries; the
only door for the front ends (``mldesk.cli``, ``mldesk.ui``).

Front ends import value types and errors from :mod:`mldesk.engine.values`, ml.yaml and
lab helpers from :mod:`mldesk.engine.labs`, window reads from :mod:`mldesk.engine.queries`.
"""

from mldesk.agent.errors import UserError  # noqa: F401 - the root of every error a user can cause
