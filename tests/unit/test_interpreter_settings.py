"""The appliers' interpreter settings are process-wide: held from the first applier's start to the last one's
end, whatever order they start and stop in (`replicator run` runs every applier in one process, and restarts
each on its own)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.pipeline.interpreter import GC_THRESHOLDS, SWITCH_INTERVAL_S, applier_settings

OWN = ((700, 10, 10), 0.005)  # the process's own settings in these tests (CPython's defaults)


@pytest.fixture(autouse=True)
def own_settings() -> Iterator[None]:
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(*OWN[0])
    sys.setswitchinterval(OWN[1])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)


def _settings() -> tuple[tuple[int, ...], float]:
    return gc.get_threshold(), round(sys.getswitchinterval(), 6)


def test_one_applier_holds_the_settings_while_it_runs_and_gives_the_process_its_own_back() -> None:
    with applier_settings():
        assert _settings() == (GC_THRESHOLDS, SWITCH_INTERVAL_S)
    assert _settings() == OWN


def test_an_applier_stopping_leaves_the_settings_to_one_still_running() -> None:
    first, second = applier_settings(), applier_settings()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first stops (or restarts) while the second runs
    assert _settings() == (GC_THRESHOLDS, SWITCH_INTERVAL_S)
    second.__exit__(None, None, None)
    assert _settings() == OWN  # not the appliers' values the second found when it started


def test_an_applier_failing_gives_the_settings_back_too() -> None:
    with pytest.raises(RuntimeError), applier_settings():
        raise RuntimeError("target lost")
    assert _settings() == OWN


# Appliers starting (True) and stopping (False) in any interleaving: a stop is of the oldest one running.
@given(st.lists(st.booleans(), max_size=30))
def test_the_settings_are_the_appliers_exactly_while_one_runs(steps: list[bool]) -> None:
    running: list[ExitStack] = []
    for start in steps:
        if start:
            holder = ExitStack()
            holder.enter_context(applier_settings())
            running.append(holder)
        elif running:
            running.pop(0).close()
        assert _settings() == ((GC_THRESHOLDS, SWITCH_INTERVAL_S) if running else OWN)
    for holder in running:
        holder.close()
    assert _settings() == OWN
