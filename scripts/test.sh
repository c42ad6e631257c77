#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), checks style and types, and runs the whole test suite against
# real PostgreSQL, MariaDB and Kafka servers that the tests start themselves (replicator.devstack).
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -k envelope
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "[test] ruff"; .venv/bin/ruff check replicator tests
echo "[test] mypy --strict"; .venv/bin/mypy replicator
echo "[test] pytest"; exec .venv/bin/pytest "${@:-tests}"
