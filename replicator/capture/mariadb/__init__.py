"""MariaDB capture: binlog row values to Debezium encodings (`types`, pure) and the binlog reader."""
