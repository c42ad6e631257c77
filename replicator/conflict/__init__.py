"""Conflict resolution per field (DESIGN 4.4). Pure: no I/O. See `policies` for the rules."""

from replicator.conflict.policies import FieldState, Outcome, Reassert
from replicator.conflict.resolver import Decision, Resolution, resolve, resolve_field

__all__ = ["Decision", "FieldState", "Outcome", "Reassert", "Resolution", "resolve", "resolve_field"]
