"""The local host: runtimes reached without SSH (``process`` and ``docker``)."""
