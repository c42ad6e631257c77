"""The benchmarks still run: each script, at a few hundred rows, against the test stack.

Their figures are not checked (speed is read from full runs, bench/README.md); what is checked is that
every case completed and passed the script's own checks (counts in Kafka and in the target, no dead
letter), and that the result file holds each case's figures. A benchmark that broke with a change of the
code it drives (as the applier's once did, a constructor argument later) fails here, not at the next
measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = 300


def _run(script: str, args: list[str], devstack_dir: Path, results: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--rows", str(ROWS), "--results-dir", str(results), *args],
        env={**os.environ, "REPLICATOR_DEVSTACK_DIR": str(devstack_dir)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{script} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    files = list(results.glob("*.json"))
    assert len(files) == 1, f"{script} wrote {files}"
    data: dict[str, object] = json.loads(files[0].read_text())
    return data


@pytest.mark.timeout(600)
def test_capture_benchmark_runs_every_case(devstack_dir: Path, tmp_path: Path) -> None:
    data = _run("capture_bench.py", ["--runs", "1", "--no-warm-up"], devstack_dir, tmp_path)
    results = data["results"]
    assert isinstance(results, list)
    assert {(r["source"], r["workload"]) for r in results} == {
        ("postgresql", "single"), ("postgresql", "bulk"), ("mariadb", "single"), ("mariadb", "bulk")
    }
    for r in results:
        assert "error" not in r, r
        assert r["rows"] == ROWS and r["kafka_messages"] == ROWS + 2 * r["transactions"]
        assert len(r["capture_runs"]) == 1 and len(r["ceiling_runs"]) == 2
        assert r["ratio"] > 0
        # PostgreSQL's ceiling also has its read without the pause, and a floor (one message per change,
        # no envelope) that put every message into Kafka; MariaDB has neither.
        postgres = r["source"] == "postgresql"
        assert (r["eager_ceiling"] is not None) == postgres
        assert len(r["floor_runs"]) == (3 if postgres else 0)
        assert (r["floor"] is not None) == postgres


@pytest.mark.timeout(600)
def test_apply_benchmark_runs_every_target(devstack_dir: Path, tmp_path: Path) -> None:
    data = _run("apply_bench.py", [], devstack_dir, tmp_path)
    results = data["results"]
    assert isinstance(results, list)
    assert {r["target"] for r in results} == {"postgresql", "mariadb"}
    for r in results:
        assert "error" not in r, r
        assert r["rows"] == ROWS and r["transactions"] == ROWS and r["kafka_messages"] == 3 * ROWS
        assert r["ratio"] > 0
        assert set(r["floors"]) == {"consume", "apply"}, r["floors"]


@pytest.mark.timeout(300)
def test_the_pgoutput_read_pause_experiment_runs(devstack_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "pg_read_pause.py"), "--rows", str(ROWS), "--repeats", "1",
         "--pauses", "0,0.001"],
        env={**os.environ, "REPLICATOR_DEVSTACK_DIR": str(devstack_dir)},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, f"pg_read_pause.py exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("pause")] == [
        "pause   0.0 ms", "pause   1.0 ms"
    ], done.stdout
