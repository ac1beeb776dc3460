"""The agent floor: stdlib-only code that runs executions on a host (Python >= 3.8).

Shipped as it is to every SSH host (``mldesk.runtimes.ssh.client`` copies this package
to ``WORKDIR/agent/<hash>/mldesk/agent/``) and imported in-process for local work, so
each piece exists once: the framed log store (``logstore``), input downloads
(``inputs``), the one symlink-safe outputs walk (``outputs``), file-system helpers
(``fsutil``), the wire protocol (``protocol``), the root of user errors (``errors``),
the runners that run a program for the process and Docker runtimes, here and on hosts
(``runner``, with the Docker Engine API client ``dockerapi``), Slurm jobs (``slurm``),
the resource sampler (``resources``), and the agent's commands (``main``). Modules here import only the standard
library and each other (an import-linter contract checks it).
"""
