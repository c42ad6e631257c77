"""Change-data-capture replicator between an online shop (MariaDB) and an ERP (PostgreSQL) via Kafka."""

__version__ = "0.1.0"
