"""``python -m mldesk.agent COMMAND ARGS...``: the agent's entry point."""

import sys

from mldesk.agent.main import main

sys.exit(main(sys.argv[1:]))
