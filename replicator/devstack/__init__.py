"""Throwaway PostgreSQL, MariaDB and Kafka servers run as local processes, for tests, demo and benchmarks."""

from replicator.devstack.stack import ConnectionSettings, DevStack, default_state_dir, mariadb_connect

__all__ = ["ConnectionSettings", "DevStack", "default_state_dir", "mariadb_connect"]
