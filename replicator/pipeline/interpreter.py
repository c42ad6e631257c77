"""The interpreter settings appliers run with, held while at least one applier of the process runs.

Both settings are process-wide, and `replicator run` runs every applier in one process: an applier that saved
and restored them by itself would, when it stopped or restarted, take them from the appliers still running
(restoring the defaults under them), or, having saved another applier's values, leave them in place after
every applier is gone. So the first applier to start saves the process's own values, and the last one to stop
puts them back.

- The cyclic garbage collector's thresholds: every event makes many short-lived objects, almost all freed by
  reference counting, while batches of messages and units stay alive; with the default thresholds the
  collector runs every 700 allocations and often scans the whole heap (a fifth of an applier's CPU).
- The thread switch interval: the writer thread needs the GIL back after each of its round trips to the
  database, while the loop's thread holds it for up to the switch interval (5 ms by default) per round trip.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Iterator

GC_THRESHOLDS = (1_000_000, 50, 100)
SWITCH_INTERVAL_S = 0.001

_lock = threading.Lock()
_holders = 0
_saved: tuple[tuple[int, ...], float] = ((), 0.0)  # the process's own settings, while appliers hold theirs


@contextlib.contextmanager
def applier_settings() -> Iterator[None]:
    """Hold the appliers' settings for the block; the process's own come back when the last holder leaves."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = (gc.get_threshold(), sys.getswitchinterval())
            gc.set_threshold(*GC_THRESHOLDS)
            sys.setswitchinterval(min(_saved[1], SWITCH_INTERVAL_S))
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                thresholds, interval = _saved
                gc.set_threshold(*thresholds)
                sys.setswitchinterval(interval)
