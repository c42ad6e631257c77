"""Errors named by intent. Every failure the replicator raises is one of these, so the pipeline
runners (the only place that retries) can classify it once: retry, stop, or dead-letter."""

from __future__ import annotations

import functools


class ReplicatorError(Exception):
    """Base of all replicator errors."""


class ConfigError(ReplicatorError):
    """The configuration is invalid; start-up stops with every problem listed."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class MappingError(ReplicatorError):
    """A mapping cannot be applied to a record or does not fit the schemas."""


class FatalError(ReplicatorError):
    """Processing cannot go on (slot lost, binlog purged, wrong server settings): stop and say what to do."""


class RetriableError(ReplicatorError):
    """A transient failure (connection lost, lock timeout, broker unavailable): retry with backoff."""


class SkippableRecordError(ReplicatorError):
    """One record cannot be processed; it goes to the dead-letter topic and the pipeline goes on."""


class DevstackError(ReplicatorError):
    """A local development server could not be set up, started or reached."""


class MissingReferenceError(SkippableRecordError):
    """A record refers to a row the target does not hold (yet): e.g. an order line whose order has not
    arrived. During a snapshot, tables arrive in no set order, so the applier waits a while for it."""


@functools.cache
def lost_connection_errors() -> tuple[type[BaseException], ...]:
    """The database drivers' errors for a server that went away, a connection found closed, a deadlock or a
    lock-wait timeout, a session ended for its silence: OperationalError and InterfaceError of psycopg, psycopg2
    and PyMySQL, and psycopg's IdleInTransactionSessionTimeout. A runner turns one that escapes it into a
    RetriableError (restart, resume from the stored position), so that a database restarting is ridden out
    wherever the connection was in use when it went."""
    import psycopg
    import psycopg2
    import pymysql

    # PostgreSQL ends a session silent in a transaction with SQLSTATE 25P03, which psycopg files under
    # InternalError (an invalid transaction state), though the connection is gone with it.
    return (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.IdleInTransactionSessionTimeout,
            psycopg2.OperationalError, psycopg2.InterfaceError, pymysql.err.OperationalError,
            pymysql.err.InterfaceError)


@functools.cache
def driver_errors() -> tuple[type[BaseException], ...]:
    """Every error of the target drivers (psycopg, PyMySQL): what a rollback on a connection already lost may
    raise, to be set aside for the error that lost it."""
    import psycopg
    import pymysql

    return (psycopg.Error, pymysql.err.MySQLError)
