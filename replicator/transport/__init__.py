"""Kafka transport: topic naming (pure) and the producer/consumer wrappers."""
