"""PostgreSQL capture: pgoutput decoding and type conversion (pure), and the replication reader."""
