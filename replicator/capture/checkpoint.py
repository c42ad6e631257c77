"""Which source position may be acknowledged: the highest one below which Kafka confirmed everything.

Transactions are registered in source order as capture publishes them; Kafka confirms their messages
in any order across partitions. A transaction's position becomes acknowledgeable only when it and
every transaction before it are sealed (all messages produced) and fully confirmed, so a crash can
only ever re-send the unacknowledged tail, never skip. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass(slots=True)
class _InFlight(Generic[P]):
    seq: int
    position: P
    pending: int = 0
    sealed: bool = False


class AckTracker(Generic[P]):
    def __init__(self) -> None:
        self._queue: deque[_InFlight[P]] = deque()
        self._by_seq: dict[int, _InFlight[P]] = {}
        self._next_seq = 0

    def open(self, position: P) -> int:
        """Register the next transaction (in source order); returns its sequence number."""
        seq = self._next_seq
        self._next_seq += 1
        entry = _InFlight(seq, position)
        self._queue.append(entry)
        self._by_seq[seq] = entry
        return seq

    def sent(self, seq: int, count: int = 1) -> None:
        """`count` more messages of transaction `seq` were handed to the producer."""
        self._by_seq[seq].pending += count

    def confirmed(self, seq: int) -> None:
        """Kafka confirmed one message of transaction `seq`."""
        entry = self._by_seq[seq]
        if entry.pending <= 0:
            raise RuntimeError(f"transaction #{seq}: more confirmations than messages sent")
        entry.pending -= 1

    def seal(self, seq: int, position: P | None = None) -> None:
        """No more messages will be sent for `seq`; `position` replaces the one given at open (e.g. the
        commit's end position, known only at commit)."""
        entry = self._by_seq[seq]
        entry.sealed = True
        if position is not None:
            entry.position = position

    def take_acknowledgeable(self) -> P | None:
        """The position of the last transaction of the fully confirmed prefix, if it grew; else None."""
        last: P | None = None
        while self._queue and self._queue[0].sealed and self._queue[0].pending == 0:
            entry = self._queue.popleft()
            del self._by_seq[entry.seq]
            last = entry.position
        return last

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    @property
    def pending_messages(self) -> int:
        return sum(entry.pending for entry in self._queue)
