"""The environment a lab's program gets (SPEC 10a; written up in SECURITY.md).

Standard library only: also shipped to SSH hosts.

On the ``process`` runtime (locally and on hosts) the program gets these variables
of the environment mldesk (or the host's agent) runs in, and nothing else of it:
the search path, the home folder, the user's name, the locale and the time zone.
Everything else, API tokens, cloud credentials, ``SSH_AUTH_SOCK``, proxies (which may
hold passwords), ``PYTHONPATH``/``MLDESK_*``, stays out. On top come mldesk's own:
``PYTHONUNBUFFERED=1``, ``MLDESK_EXECUTION_ID``, ``MLDESK_EXECUTION_NAME`` (and what
the GPU assignment sets). In a container the image's own environment applies plus
mldesk's own; nothing of the host's.
"""

from __future__ import annotations

from typing import Dict, Mapping

PASSED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
PASSED_PREFIXES = ("LC_",)


def host_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """The part of ``environ`` a program on the process runtime inherits."""
    return {k: v for k, v in environ.items() if k in PASSED or k.startswith(PASSED_PREFIXES)}
