#!/usr/bin/env bash
# Run the whole test suite, the way CI does:
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh tests/unit -x   # extra arguments go to pytest
# Installs/starts what the tests need first (each step is idempotent and takes
# well under a second when everything is already in place): Debian packages and
# .venv, dockerd, Xvfb, the test sshd (+ netns host), Slurm, the test images. Docker,
# SSH and Slurm tests fail here instead of being skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/ci/setup.sh
bash scripts/ci/start-services.sh
bash scripts/ci/build-test-images.sh

export MLDESK_REQUIRE_DOCKER=1 MLDESK_REQUIRE_SSH=1 MLDESK_REQUIRE_SLURM=1
if [[ ${MLDESK_CI_NETNS:-1} != 0 ]]; then
  export MLDESK_REQUIRE_NETNS=1
fi
export QT_QPA_PLATFORM=offscreen
export DISPLAY=${DISPLAY:-:99}
eval "$(bash scripts/ci/sshd.sh env)"
eval "$(bash scripts/ci/netns-host.sh env)"
eval "$(bash scripts/ci/slurm.sh env)"

rc=0
.venv/bin/python -m pytest -p no:cacheprovider -q -ra "$@" || rc=$?
if [[ $rc == 5 ]]; then
  echo "test.sh: pytest collected no tests (exit 5): treating that as a failure" >&2
  exit 1
fi
exit "$rc"
