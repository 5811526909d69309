"""Readings: ingest with group commit and idempotency keys, latest values, history, aggregates."""
