"""Running a whole config (every capture and applier) in the test process, as `replicator run` does."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from replicator.config import load_config
from replicator.pipeline.apply_runner import build_apply
from replicator.pipeline.capture_runner import build_capture
from replicator.pipeline.supervisor import Supervisor
from replicator.transport.kafka import read_last_value
from replicator.transport.topics import offsets_topic


@contextmanager
def running_pipeline(config_path: Path, *, without: Iterable[str] = ()) -> Iterator[Supervisor]:
    """Every capture and applier of the config under one supervisor, but the sources named in `without`."""
    config = load_config(config_path)
    supervisor = Supervisor(max_backoff_s=2.0)
    for source in config.sources:
        if source.name in without:
            continue
        supervisor.add(f"capture:{source.name}", functools.partial(build_capture, config, source.name))
    for target in config.targets:
        supervisor.add(f"apply:{target.name}", functools.partial(build_apply, config, target.name))
    supervisor.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
        problems = supervisor.wait(120)
        if problems:
            raise AssertionError("pipeline failed: " + "; ".join(problems))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0,
               supervisor: Supervisor | None = None, describe: Callable[[], str] | None = None) -> None:
    """Poll `condition`; on time-out fail with `describe()` (the state seen) to explain why."""
    deadline = time.monotonic() + timeout
    while not condition():
        if supervisor is not None and supervisor.stopping:
            raise AssertionError(f"the pipeline stopped while waiting for {what}: {supervisor.wait(1)}")
        if time.monotonic() > deadline:
            state = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{state}")
        time.sleep(0.2)


def wait_for_snapshots(config_path: Path, supervisor: Supervisor | None = None, timeout: float = 60.0) -> None:
    """Wait until every source of the config has its initial snapshot recorded as done. A pipeline stopped
    before that resumes the snapshot at its next start, and the rows it reads then carry that later read time
    as their version, newer than edits made while it was stopped."""
    config = load_config(config_path)
    kafka = config.kafka.client()

    def done(name: str) -> bool:
        stored = read_last_value(kafka, offsets_topic(name), name.encode(), timeout=10)
        return bool(orjson.loads(stored or b"{}").get("snapshot_done"))

    for source in config.sources:
        wait_until(functools.partial(done, source.name), f"the snapshot of source {source.name} recorded as done",
                   timeout=timeout, supervisor=supervisor)
