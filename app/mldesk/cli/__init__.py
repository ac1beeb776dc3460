"""The ``mldesk`` command line (a front end): one module per command group, every
action through ``mldesk.engine``; it never imports the window (``mldesk.launcher``
hands it the window as a callable)."""
