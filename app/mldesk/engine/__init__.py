"""The engine floor: the facade (``Engine``), the supervisor and the read queries; the
only door for the front ends (``mldesk.cli``, ``mldesk.ui``)."""
