"""ReplayWindow, the filter that keeps a re-read (resumed snapshot, re-snapshot) and the stream consistent:
a streamed change older than the point its row was read at is already in the row's `r` event and is
dropped; what a read cannot show (a row deleted before it) must pass, with what follows it."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from replicator.capture.snapshot import ReplayWindow, SnapshotProgress
from replicator.events import Op, PostgresPosition, RowChange, SourceTransaction, TableId

TABLE = TableId("public", "item")
OTHER = TableId("public", "other")
READ_AT = 100  # every row of TABLE was read again at this point


def window() -> ReplayWindow:
    progress = SnapshotProgress({str(TABLE): [(None, READ_AT)]}, None)
    return ReplayWindow(progress, frozenset({TABLE}), READ_AT,
                        lambda tx, point: tx.position.commit_lsn < point,
                        lambda tx, newest: tx.position.commit_lsn >= newest)


def tx(at: int) -> SourceTransaction:
    return SourceTransaction(f"1:{at}", 0, PostgresPosition(at, at, 1))


def change(op: Op, key: int, table: TableId = TABLE) -> RowChange:
    row: dict[str, Any] = {"id": key, "n": key}
    return RowChange(table, op, {"id": key}, None if op is Op.CREATE else row, None if op is Op.DELETE else row,
                     PostgresPosition(0, 0, 1))


def test_changes_older_than_the_read_are_dropped_and_newer_ones_pass() -> None:
    w = window()
    assert w.covers(tx(50))
    assert w.drops(change(Op.UPDATE, 4))
    assert not w.drops(change(Op.UPDATE, 4, OTHER))  # a table not read again
    assert not w.covers(tx(150)) and w.closed  # past the read: the window closes for good
    assert not w.covers(tx(60))


def test_a_row_deleted_before_the_read_gets_its_delete_and_everything_after_it() -> None:
    w = window()
    assert w.covers(tx(40))
    assert w.drops(change(Op.UPDATE, 3))  # in the read's r event... had the row still existed
    assert w.covers(tx(50))
    assert not w.drops(change(Op.DELETE, 3))  # the read does not have the row: only this tells consumers
    assert w.covers(tx(60))
    assert not w.drops(change(Op.CREATE, 3))  # re-inserted: follows the delete, so it must follow too
    assert not w.drops(change(Op.UPDATE, 3))
    assert w.drops(change(Op.UPDATE, 5))  # other rows as before


def test_a_window_restored_after_a_restart_still_passes_what_it_passed() -> None:
    # A capture passes a delete inside the window, stores the window, and restarts: the re-insert that follows
    # the delete (older than the read) must pass after the restart as before it. So must a truncated table.
    w = window()
    assert w.covers(tx(50)) and not w.drops(change(Op.DELETE, 3))
    assert w.covers(tx(55)) and not w.drops(change(Op.TRUNCATE, 0, OTHER))
    stored = orjson.loads(orjson.dumps(w.to_json()))  # as the offsets topic keeps it
    restarted = window()
    assert restarted.covers(tx(60)) and restarted.drops(change(Op.CREATE, 3))  # what a window forgetting did
    restarted = window()
    restarted.restore_passed(stored)
    assert restarted.passed_count == w.passed_count == 2
    assert restarted.covers(tx(60))
    assert not restarted.drops(change(Op.CREATE, 3)) and not restarted.drops(change(Op.UPDATE, 3))
    assert restarted.drops(change(Op.UPDATE, 5))
    restarted.restore_passed({"ranges": {}})  # a window stored before passes were: nothing to restore
    assert restarted.passed_count == 2


HISTORIES = st.lists(st.tuples(st.sampled_from([Op.CREATE, Op.UPDATE, Op.DELETE]), st.integers(1, 4),
                               st.integers(1, 99)), max_size=30)


def committed_before_the_read(history: list[tuple[Op, int, int]]) -> tuple[dict[int, int], list[tuple[int, RowChange]]]:
    """Rows 1..4 exist before the window; `history` are changes committed before the read (in order), each
    made only where it is possible. Returns the rows the source holds at the read, and the changes with the
    points they committed at."""
    source = {key: 0 for key in range(1, 5)}
    committed: list[tuple[int, RowChange]] = []
    for at, (op, key, value) in enumerate(history, start=1):
        exists = key in source
        if (op is Op.CREATE) == exists:
            continue
        if op is Op.DELETE:
            del source[key]
        else:
            source[key] = value
        row = {"id": key, "n": source.get(key)}
        committed.append((at, RowChange(TABLE, op, {"id": key}, None, None if op is Op.DELETE else row,
                                        PostgresPosition(at, at, 1))))
    return source, committed


def consumer_after(w: ReplayWindow, source: dict[int, int], committed: list[tuple[int, RowChange]]) -> dict[int, int]:
    """A consumer holding rows 1..4 from an earlier read, then getting the read's r events (every row the source
    holds then), then the changes the window lets through; asserts that no change older than the read passes
    of a row the read returned, when the window knows what the read returned."""
    consumer = {key: 0 for key in range(1, 5)}  # from the earlier read
    consumer.update(source)  # the read at READ_AT
    known = bool(w.progress.read_here)
    for at, c in committed:
        assert w.covers(tx(at))
        if not w.drops(c):
            assert not known or c.key["id"] not in source, c  # nothing older follows a returned row's r event
            if c.op is Op.DELETE:
                consumer.pop(c.key["id"], None)
            else:
                assert c.after is not None
                consumer[c.key["id"]] = c.after["n"]
    return consumer


@given(HISTORIES)
def test_consumers_end_at_the_rows_the_source_holds_after_the_read(history: list[tuple[Op, int, int]]) -> None:
    """The read made by an earlier run (its rows unknown): consumers end where the source is."""
    source, committed = committed_before_the_read(history)
    assert consumer_after(window(), source, committed) == source


def window_read_here(rows: set[int]) -> ReplayWindow:
    """`window()`, the read at READ_AT made by this process and returning `rows`."""
    w = window()
    for key in rows:
        w.progress.note_read(change(Op.READ, key), READ_AT)
    return w


def test_a_row_the_read_returned_gets_none_of_its_older_changes_not_even_a_delete() -> None:
    # Deleted and inserted again before the read: the read has the row, newer than both. Passing the delete
    # (and then the re-insert) would publish the row's older states after its r event.
    w = window_read_here({3, 5})
    for at, op in [(40, Op.UPDATE), (50, Op.DELETE), (60, Op.CREATE), (70, Op.UPDATE)]:
        assert w.covers(tx(at)) and w.drops(change(op, 3)), (at, op)
    assert w.passed_count == 0


def test_a_row_the_read_did_not_return_gets_every_older_change() -> None:
    w = window_read_here({5})
    for at, op in [(40, Op.UPDATE), (50, Op.DELETE), (60, Op.CREATE), (70, Op.DELETE)]:
        assert w.covers(tx(at)) and not w.drops(change(op, 3)), (at, op)
    assert w.covers(tx(80)) and w.drops(change(Op.UPDATE, 5))


def test_what_this_process_read_outranks_a_delete_an_earlier_run_passed() -> None:
    # The earlier run passed a delete of row 3 and stored that; this run read row 3 again (it was inserted again
    # before this read): its older changes replayed now are in this read, and are dropped.
    earlier = window()
    assert earlier.covers(tx(50)) and not earlier.drops(change(Op.DELETE, 3))
    stored = orjson.loads(orjson.dumps(earlier.to_json()))
    w = window_read_here({3})
    w.restore_passed(stored)
    assert w.covers(tx(60)) and w.drops(change(Op.CREATE, 3)) and w.drops(change(Op.UPDATE, 3))


def test_the_rows_read_are_let_go_when_the_window_closes() -> None:
    w = window_read_here({1, 2, 3})
    assert w.progress.read_here
    assert not w.covers(tx(READ_AT)) and w.closed
    assert not w.progress.read_here


@given(HISTORIES)
def test_with_the_read_known_consumers_never_see_a_row_older_than_its_read(
    history: list[tuple[Op, int, int]]
) -> None:
    """The read made by this process: consumers end where the source is, and after the read's r events
    nothing older is published of a row the read returned (nothing at all of it here, since every change is
    older than the read)."""
    source, committed = committed_before_the_read(history)
    assert consumer_after(window_read_here(set(source)), source, committed) == source


def test_a_read_row_is_known_whatever_the_order_of_its_key_columns() -> None:
    # A snapshot read builds its key in one column order, a streamed change perhaps in another.
    progress = SnapshotProgress({str(TABLE): [(None, READ_AT)]}, None)
    progress.note_read(RowChange(TABLE, Op.READ, {"a": 1, "b": 2}, None, {"a": 1, "b": 2}, PostgresPosition(0, 0, 1)),
                       READ_AT)
    assert progress.in_read(TABLE, {"b": 2, "a": 1}, READ_AT) is True
    assert progress.in_read(TABLE, {"b": 1, "a": 2}, READ_AT) is False
    assert progress.in_read(TABLE, {"a": 1, "b": 2}, READ_AT + 1) is None  # no read of this process there
