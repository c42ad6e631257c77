"""Debezium envelopes: turn captured changes into the JSON messages Debezium's PostgreSQL and MariaDB
connectors emit (schemas disabled, transaction metadata on). Pure: no I/O."""
