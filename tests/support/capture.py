"""Running a capture in tests: as a thread of the test process, or as a `replicator capture` process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from replicator.config import ReplicatorConfig, load_config
from replicator.pipeline.capture_runner import CaptureRunner, build_capture


def write_config(path: Path, bootstrap: str, sources: list[dict[str, Any]], **kafka: Any) -> Path:
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": bootstrap, **kafka}, "sources": sources}))
    return path


@contextmanager
def capture_thread(config_path: Path, source: str) -> Iterator[CaptureRunner]:
    """Run one capture in a background thread; stop it cleanly at the end and re-raise its error."""
    config: ReplicatorConfig = load_config(config_path)
    runner = build_capture(config, source)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["stats"] = runner.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"capture-{source}", daemon=True)
    thread.start()
    try:
        while not runner.opened.wait(0.1):
            if not thread.is_alive():
                break
        if "error" in outcome:
            raise outcome["error"]
        yield runner
    finally:
        runner.stop()
        thread.join(60)
        if thread.is_alive():
            raise AssertionError(f"capture {source} did not stop within 60s")
    if "error" in outcome:
        raise outcome["error"]


def start_capture_process(
    config_path: Path, source: str, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """`replicator capture` as its own process, for kill -9 tests; its output is appended to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "replicator.cli", "capture", "--config", str(config_path), "--source", source],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )
