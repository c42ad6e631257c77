"""`replicator run` as a process of its own, for the tests that kill, freeze or cut it off, or scrape it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def start_replicator_run(config: Path, log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`replicator run --config config`, its output (stdout and stderr) into `log_path`, with this process's
    environment and `env` on top."""
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "replicator.cli", "run", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
