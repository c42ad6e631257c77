#!/usr/bin/env bash
# Sets everything up and runs the demo on local servers. Extra arguments go to `replicator demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if .venv/bin/replicator demo --help >/dev/null 2>&1; then
  exec .venv/bin/replicator demo "$@"
fi
# Until the shop <-> ERP demo lands, bring the local stack up and show it.
.venv/bin/replicator dev up
exec .venv/bin/replicator dev status
