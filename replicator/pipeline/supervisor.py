"""Runs captures and appliers, restarting them on retriable errors with backoff. The one place that
decides what an error means for a running pipeline: retriable -> restart after a pause; configuration or
fatal -> stop everything and say why."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import KafkaException

from replicator.errors import ConfigError, FatalError, RetriableError
from replicator.transport.kafka import is_transient

log = logging.getLogger(__name__)

# How often a waiting main thread wakes up, so that the Python handler of a signal runs (see Supervisor.wait).
WAKE_S = 0.2


class Runnable(Protocol):
    def run(self) -> object: ...

    def stop(self) -> None: ...

    def close(self) -> None:
        """Release what the runner holds (its Kafka clients); `run` does it as it returns. For a runner built
        and then not run."""


@dataclass
class Worker:
    name: str
    build: Callable[[], Runnable]
    restarts: int = 0
    last_error: str | None = None  # why it last restarted
    current: Runnable | None = None  # the runner built last
    thread: threading.Thread | None = None
    failure: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    # What the metrics and the health endpoint read, from another thread (under `lock`): the worker's state,
    # the runner whose `run` is in progress, and the counts of its attempts that ended (a runner's `stats`
    # start at zero with each attempt, and the metrics are totals over the process's life).
    state: str = "starting"  # starting | running | retrying | failed | stopped
    attempt: Runnable | None = None
    ended: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def totals(self) -> dict[str, int]:
        """The counts of `stats` over every attempt so far, the one in progress included."""
        with self.lock:
            totals = dict(self.ended)
            for name, value in _counts(self.attempt).items():
                totals[name] = totals.get(name, 0) + value
        return totals

    def _set(self, state: str, attempt: Runnable | None = None) -> None:
        with self.lock:
            if self.attempt is not None and attempt is None:
                for name, value in _counts(self.attempt).items():
                    self.ended[name] = self.ended.get(name, 0) + value
            self.state, self.attempt = state, attempt


def _counts(runner: Runnable | None) -> dict[str, int]:
    """The integer fields of a runner's `stats` dataclass, if it has one."""
    stats = getattr(runner, "stats", None)
    if stats is None or not dataclasses.is_dataclass(stats):
        return {}
    values = ((f.name, getattr(stats, f.name)) for f in dataclasses.fields(stats))
    return {name: value for name, value in values if type(value) is int}


class Supervisor:
    def __init__(self, *, max_backoff_s: float = 30.0) -> None:
        self.workers: list[Worker] = []
        self._stopping = threading.Event()
        self._fatal: list[str] = []
        self.max_backoff_s = max_backoff_s

    def add(self, name: str, build: Callable[[], Runnable]) -> None:
        self.workers.append(Worker(name, build))

    def _run_worker(self, worker: Worker) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                runner = worker.current = worker.build()
                if self._stopping.is_set():
                    runner.close()
                    break
                worker._set("running", runner)
                try:
                    runner.run()
                finally:
                    worker._set("stopped" if self._stopping.is_set() else "retrying")
                if self._stopping.is_set():
                    break
                raise RetriableError(f"{worker.name} returned without being asked to stop")
            except (RetriableError, KafkaException) as exc:
                if isinstance(exc, KafkaException) and not is_transient(exc.args[0]):
                    log.exception("stopping: unexpected error", extra={"worker": worker.name})
                    self._unexpected(worker, exc)
                    break
                # A Kafka error librdkafka calls retriable (a leader moving, a broker restarting) is one too.
                worker.restarts += 1
                worker.last_error = f"{type(exc).__name__}: {exc}"
                if time.monotonic() - started > 60:
                    backoff = 0.5  # it ran fine for a while: this is a new problem
                worker._set("retrying")
                log.warning("retrying after a retriable error",
                            extra={"worker": worker.name, "error": str(exc), "backoff_s": backoff})
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            except (ConfigError, FatalError) as exc:
                worker._set("failed")
                worker.failure = exc
                self._fatal.append(f"{worker.name}: {exc}")
                log.error("stopping: fatal error", extra={"worker": worker.name, "error": str(exc)})
                self.stop()
            except Exception as exc:
                log.exception("stopping: unexpected error", extra={"worker": worker.name})
                self._unexpected(worker, exc)
        if worker.state != "failed":
            worker._set("stopped")
        worker.done.set()

    def _unexpected(self, worker: Worker, exc: Exception) -> None:
        # Unclassified errors are bugs or unknown conditions: stop rather than loop on them.
        worker._set("failed")
        worker.failure = exc
        self._fatal.append(f"{worker.name}: unexpected {type(exc).__name__}: {exc}")
        self.stop()

    def start(self) -> None:
        for worker in self.workers:
            worker.thread = threading.Thread(target=self._run_worker, args=(worker,), name=worker.name, daemon=True)
            worker.thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for worker in self.workers:
            if worker.current is not None:
                worker.current.stop()

    def wait(self, timeout: float | None = None) -> list[str]:
        """Block until every worker ended (after `stop` or a fatal error); returns the fatal errors.

        Wakes every WAKE_S: Python runs a signal's handler (SIGTERM: `stop`) in the main thread, when that
        thread next runs bytecode, and the kernel may hand a process's signal to any of its threads (it does
        to a librdkafka or worker thread when the process wakes from SIGSTOP, the main thread not being
        ready to take it): an untimed wait would then never run the handler and SIGTERM would be lost."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self.workers:
            while True:
                remaining = WAKE_S if deadline is None else min(WAKE_S, max(0.0, deadline - time.monotonic()))
                if worker.done.wait(remaining) or (deadline is not None and time.monotonic() >= deadline):
                    break
        return list(self._fatal)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()
