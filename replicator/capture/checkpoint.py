"""Which source positions may be acknowledged: those of transactions whose every message Kafka confirmed.

Capture seals transactions in source order once all their messages are produced. Kafka's confirmations
are taken in bulk: the producer reports failures only, and a flush that returns with nothing outstanding
proves every message produced before it is in Kafka (EventProducer.confirm). So at such a point every
sealed transaction is durable, and the newest sealed position may be acknowledged; a transaction still
being produced is not sealed and holds its position back. A crash can only ever re-send the
unacknowledged tail, never skip. Pure bookkeeping, no I/O.

Why not one delivery report per message: each costs confluent-kafka a Python call and a message object,
about 1.3 µs of the capture thread's CPU, three times per one-row transaction (its BEGIN, row and END
messages), while a flush every quarter second stalls it for a few milliseconds (bench/README.md).
"""

from __future__ import annotations

from typing import Generic, TypeVar

P = TypeVar("P")


class AckTracker(Generic[P]):
    def __init__(self) -> None:
        # Sealed since the last confirmation, oldest first: the newest one, and every marker.
        self._last: P | None = None
        self._markers: list[P] = []
        self._sealed = 0

    def seal(self, position: P, *, marker: bool = False) -> None:
        """Every message up to `position` (the next transaction in source order) has been produced. A
        `marker` position (a completed snapshot) is reported on its own by `take_confirmed`, even when
        later positions are sealed too."""
        self._last = position
        self._sealed += 1
        if marker:
            self._markers.append(position)

    def take_confirmed(self) -> tuple[P | None, list[P]]:
        """Kafka confirmed everything produced so far: the newest sealed position (None when nothing was
        sealed since the last call) and the markers among the sealed ones, oldest first."""
        last, markers = self._last, self._markers
        self._last, self._markers, self._sealed = None, [], 0
        return last, markers

    @property
    def pending(self) -> int:
        """Transactions sealed since the last confirmation."""
        return self._sealed
