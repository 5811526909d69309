"""Versioned schema migrations: collections, indexes and data changes, each applied once.

Steps live in `app.migrations.steps`, in order; `runner` applies the pending ones under a
lease (two processes never run one twice) and records each in `schema_migrations`.
`python -m app migrate` applies them; `--status` lists applied and pending steps.
"""
