"""How every Kafka client of the replicator reaches the cluster: its bootstrap servers, and the librdkafka
settings each producer, consumer and admin client gets (security, timeouts), from the config's `kafka`
section (`KafkaConfig.client`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class KafkaClient:
    bootstrap: str
    # librdkafka properties. They may hold secrets (sasl.password, ssl.key.password): never in repr.
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def config(self, own: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A client's librdkafka configuration: the shared settings, then the client's `own`."""
        return {"bootstrap.servers": self.bootstrap, **self.settings, **(own or {})}

    def __str__(self) -> str:
        return self.bootstrap
