"""`replicator demo` end to end, as the README's first command runs it: the local stack, fresh demo databases,
the pipeline, both simulators, the settling and the convergence report; nothing left running afterwards.

The demo uses fixed names (databases `prestashop` and `odoo`, topics `shop.*` and `erp.*`); no other test uses
them, so it can run on the test session's stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from replicator.devstack import ConnectionSettings, DevStack

pytestmark = pytest.mark.e2e

FLOWS = ("customers", "addresses", "orders", "status", "invoices", "payments", "stock")
REPORT_LINE = re.compile(r"^(?P<flow>\w+): (?P<verdict>clean|\d+ differences) \((?P<checked>\d+) checked\)$", re.M)


def _state_dir(devstack: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state folder of the session's stack: $REPLICATOR_DEVSTACK_DIR when the fixture reused it, else the
    temporary folder the fixture started it in."""
    candidates = [Path(os.environ["REPLICATOR_DEVSTACK_DIR"])] if os.environ.get("REPLICATOR_DEVSTACK_DIR") else []
    candidates += sorted(tmp_path_factory.getbasetemp().glob("devstack*"))
    for candidate in candidates:
        stack = DevStack(state_dir=candidate.resolve())
        if stack.is_running() and stack.settings().kafka_bootstrap == devstack.kafka_bootstrap:
            return candidate.resolve()
    raise AssertionError(f"cannot find the state folder of the session's stack among {candidates}")


def _processes_running(needle: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in command:
            found.append(f"{entry.name}: {command}")
    return found


@pytest.mark.timeout(900)
def test_the_demo_replicates_live_and_converges_in_every_flow(
    devstack: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    state_dir = _state_dir(devstack, tmp_path_factory)
    result = subprocess.run(
        [sys.executable, "-m", "replicator", "demo", "--duration", "20", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=840, check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]

    assert "Convergence report" in output
    report = {m["flow"]: (m["verdict"], int(m["checked"])) for m in REPORT_LINE.finditer(result.stdout)}
    assert sorted(report) == sorted(FLOWS), output[-4000:]
    assert all(verdict == "clean" for verdict, _ in report.values()), report
    for flow in ("customers", "orders", "stock"):
        assert report[flow][1] > 0, report
    assert "Both systems converged" in result.stdout

    # The live view ran (not a terminal here: one summary line every 5 s) and no password was printed.
    assert re.search(r"events/s .*latency p50", result.stdout), result.stdout[-4000:]
    secrets = DevStack(state_dir=state_dir).secret_values()
    assert secrets and not any(secret in output for secret in secrets)

    # The pipeline was stopped and waited for.
    assert not (state_dir / "demo" / "pipeline.pid").exists()
    config = str(state_dir / "demo" / "config.yaml")
    assert _processes_running(config) == []
    env_lines = (state_dir / "env").read_text().splitlines()
    assert f"REPLICATOR_DEMO_CONFIG={config}" in env_lines
    assert (state_dir / "env").stat().st_mode & 0o777 == 0o600
