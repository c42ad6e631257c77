"""Which source position may be acknowledged: the highest one below which Kafka confirmed everything.

Transactions are registered in source order as capture publishes them; Kafka confirms their messages
in any order across partitions. A transaction's position becomes acknowledgeable only when it and
every transaction before it are sealed (all messages produced) and fully confirmed, so a crash can
only ever re-send the unacknowledged tail, never skip. Pure bookkeeping, no I/O.

Built for the capture's hot loop (one entry per source transaction, one delivery report per Kafka
message): an entry is its own delivery callback (`InFlight.delivered`, a bound method handed to the
producer as is), counts are plain attributes the runner increments, and nothing is looked up by key.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

P = TypeVar("P")


class InFlight(Generic[P]):
    """One transaction: `sent` messages handed to the producer, `confirmed` of them delivered."""

    __slots__ = ("_tracker", "confirmed", "marker", "position", "sealed", "sent")

    def __init__(self, tracker: AckTracker[P], position: P) -> None:
        self._tracker = tracker
        self.position = position
        self.sent = 0
        self.confirmed = 0
        self.sealed = False
        self.marker = False

    def delivered(self, err: Any, msg: Any) -> None:
        """The producer's delivery report for one message of this transaction. A failure (librdkafka
        already retried) is kept for the runner to raise: the transaction then never completes, so
        neither its position nor any later one is acknowledged."""
        if err is None:
            self.confirmed += 1
        elif self._tracker.failure is None:
            self._tracker.failure = f"Kafka refused a message for {msg.topic()}: {err}"


class AckTracker(Generic[P]):
    def __init__(self) -> None:
        self._queue: deque[InFlight[P]] = deque()
        self.failure: str | None = None
        # Positions sealed as markers that the confirmed prefix passed over, oldest first: the caller
        # takes (and clears) them with the acknowledgeable position.
        self.markers: list[P] = []

    def open(self, position: P) -> InFlight[P]:
        """Register the next transaction (in source order). Count its messages in `sent` as they are
        produced, with `delivered` as their delivery callback."""
        entry = InFlight(self, position)
        self._queue.append(entry)
        return entry

    @staticmethod
    def seal(entry: InFlight[P], position: P | None = None, *, marker: bool = False) -> None:
        """No more messages will be sent for `entry`; `position` replaces the one given at open (e.g.
        the commit's end position, known only at commit). A `marker` position is reported in `markers`
        even when later positions are confirmed in the same call."""
        entry.sealed = True
        entry.marker = marker
        if position is not None:
            entry.position = position

    def take_acknowledgeable(self) -> P | None:
        """The position of the last transaction of the fully confirmed prefix, if it grew; else None."""
        last: P | None = None
        queue = self._queue
        while queue:
            entry = queue[0]
            if not entry.sealed or entry.confirmed < entry.sent:
                break
            if entry.confirmed > entry.sent:
                raise RuntimeError(f"transaction at {entry.position!r}: more confirmations than messages sent")
            queue.popleft()
            last = entry.position
            if entry.marker:
                self.markers.append(last)
        return last

    @property
    def in_flight(self) -> int:
        return len(self._queue)
