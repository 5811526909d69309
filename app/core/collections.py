"""The name of every MongoDB collection, once.

Storage models and the code that works on raw collections (hot paths, the worker's cleanup,
migrations) refer to these constants, never to string literals.
"""

from __future__ import annotations

USERS = "users"
SESSIONS = "sessions"
FOLDERS = "folders"
PRODUCTS = "products"
DEVICES = "devices"
GRANTS = "grants"
INVITES = "invites"
READINGS = "readings"
DEVICE_LATEST = "device_latest"
IDEMPOTENCY_KEYS = "idempotency_keys"
EMAIL_OUTBOX = "email_outbox"
LEASES = "leases"
SCHEMA_MIGRATIONS = "schema_migrations"
COMMANDS = "commands"
COMMAND_SEQUENCES = "command_sequences"
ALERT_RULES = "alert_rules"
ALARMS = "alarms"
ALERT_STATES = "alert_states"
ALERT_EVENTS = "alert_events"
WEBHOOK_DELIVERIES = "webhook_deliveries"
NOTIFICATION_LOG = "alert_notification_log"
