"""One `Settings` object for the whole service, read from the environment and `.env`."""

from __future__ import annotations

import json
import secrets
from functools import lru_cache
from ipaddress import ip_network
from typing import Annotated, Literal

from pydantic import (
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pymongo.errors import ConfigurationError, InvalidURI
from pymongo.uri_parser import parse_uri

Environment = Literal["development", "test", "staging", "production"]

MIN_SECRET_CHARS = 32


class Settings(BaseSettings):
    """Every setting of the service; each one is documented in `.env.example`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- service ---------------------------------------------------------------------------
    # Production unless told otherwise: `make run` and the tests set development/test.
    environment: Environment = "production"
    app_name: str = "Sensorhub"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # API processes `python -m app` starts on HOST:PORT (uvicorn workers sharing the socket);
    # one per core. Each has its own group commit; limits and caches hold across them.
    web_concurrency: int = Field(default=1, ge=1, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Once started, freeze the objects made so far (modules, routes, schemas) out of the cyclic
    # garbage collector's sight and collect the young generation less often: collections no
    # longer walk the whole app mid-request (single-reading ingest p99 ~180 ms -> ~45 ms).
    gc_tuning: bool = True
    # Share of successful requests (status < 400) written to the access log, 0 to 1; errors
    # are always logged. Each JSON line costs ~17 us, 4% of a single-reading ingest's CPU:
    # busy ingest fleets may log a sample (Prometheus still counts every request).
    access_log_sample_rate: float = Field(default=1.0, ge=0, le=1)

    # --- MongoDB ---------------------------------------------------------------------------
    mongodb_url: str = "mongodb://127.0.0.1:27017"
    mongodb_db: str = Field(default="sensorhub", pattern=r"^[A-Za-z0-9_-]{1,63}$")
    mongodb_timeout_ms: int = Field(default=5000, ge=100)
    # Longest any one database operation may take (the driver's timeoutMS: reads also carry
    # it to the server as maxTimeMS); past it the request answers 503.
    mongodb_operation_timeout_ms: int = Field(default=10_000, ge=10)
    readings_retention_days: int = Field(default=365, ge=1)

    # --- Redis -----------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_s: float = Field(default=0.5, gt=0)

    # --- start-up and readiness --------------------------------------------------------------
    startup_retry_attempts: int = Field(default=10, ge=1)
    startup_retry_max_wait_s: float = Field(default=5.0, gt=0)
    ready_timeout_s: float = Field(default=2.0, gt=0)

    # --- Firebase --------------------------------------------------------------------------
    firebase_project_id: str = "demo-sensorhub"
    firebase_auth_emulator_host: str | None = None
    # The web console's Firebase web config (public values from the Firebase console's
    # project settings); the auth domain defaults to `<project id>.firebaseapp.com`.
    console_firebase_api_key: str = "demo-api-key"
    console_firebase_auth_domain: str | None = None

    # --- worker: email delivery, outbox and cleanup (app/worker) ---------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_from: str = "Sensorhub <noreply@sensorhub.local>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    email_max_attempts: int = Field(default=5, ge=1, le=50)
    task_retry_backoff_max_s: int = Field(default=600, ge=1)
    email_pending_grace_s: int = Field(default=120, ge=1)
    email_lease_s: int = Field(default=600, ge=30)
    email_requeue_interval_s: float = Field(default=60.0, gt=0)
    cleanup_interval_s: float = Field(default=3600.0, gt=0)
    # How often the beat mends stale folder paths (catalog.repair_tree).
    catalog_repair_interval_s: float = Field(default=900.0, gt=0)
    outbox_archive_after_days: int = Field(default=30, ge=1)
    # Archived outbox entries are deleted this many days after their last change; their
    # dedupe keys go with them. At least OUTBOX_ARCHIVE_AFTER_DAYS.
    outbox_retention_days: int = Field(default=365, ge=1)

    # --- observability: Sentry and Prometheus (app/core/observability.py, /metrics) --------
    sentry_dsn: str | None = None
    sentry_environment: str | None = None
    sentry_release: str | None = None
    sentry_sample_rate: float = Field(default=1.0, ge=0, le=1)
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0, le=1)
    sentry_profiles_sample_rate: float = Field(default=0.0, ge=0, le=1)
    metrics_token: SecretStr | None = None
    # --- identity: Firebase verification, API session tokens, admins, master token -----------
    # Seconds the Firebase SDK waits for Google (or the emulator) before giving up.
    firebase_http_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Verified Firebase ID tokens kept in memory (each until its own expiry).
    firebase_token_cache_size: int = Field(default=10_000, ge=0)
    # HMAC key of the API's session tokens; required (32+ characters) outside development/test.
    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = Field(default="sensorhub", min_length=1)
    jwt_audience: str = Field(default="sensorhub-api", min_length=1)
    access_token_ttl_s: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=60, le=365 * 86_400)
    # Comma-separated email domains whose VERIFIED addresses are admins, e.g. "example.com".
    admin_email_domains: str = ""
    # Bearer token with admin rights for operations scripts; unset = disabled.
    master_token: SecretStr | None = None
    # Minimum seconds between two `last_seen_at` writes for one user.
    user_seen_interval_s: int = Field(default=60, ge=0)
    # Seconds a device key's lookup is kept in memory (0 = look up every request). Rotation
    # and deletion revoke it everywhere at once over Redis; this bounds hand-made DB changes.
    device_key_cache_s: float = Field(default=300.0, ge=0, le=3600)
    # Seconds each API process may keep a session's user, a user's grants and a device's
    # access path in memory (0 = read them every request). Logout, disabling, role and grant
    # removals, moves and deletions reach every process over Redis at once; this bounds only
    # changes made in the database by hand.
    auth_cache_s: float = Field(default=30.0, ge=0, le=3600)
    # Absolute lifetime of an API session (from sign-in); refresh rotation cannot extend it.
    session_max_age_s: int = Field(default=30 * 86_400, ge=300)
    # Seconds a refresh may reuse a Firebase account lookup (disabled, deleted, signed out
    # everywhere, admin claim) instead of asking Firebase again.
    firebase_account_cache_s: float = Field(default=30.0, ge=0, le=600)

    # A stand-in signing key for development and tests when JWT_SECRET is unset: random per
    # process, so tokens do not survive a restart and nobody can know it.
    _generated_jwt_secret: str = PrivateAttr(default_factory=lambda: secrets.token_urlsafe(48))

    # --- catalog: folders, products, devices, sharing ------------------------------------
    device_offline_after_s: int = Field(default=300, ge=1)
    device_metadata_max_bytes: int = Field(default=8192, ge=64)
    page_size_default: int = Field(default=50, ge=1)
    page_size_max: int = Field(default=1000, ge=1)
    shares_per_resource_max: int = Field(default=200, ge=1)
    # Seconds the fleet statistics' device counts are reused for the same scope and filters
    # (0 = count on every request). Readings per minute and alarms are always fresh.
    stats_cache_s: float = Field(default=5.0, ge=0, le=300)
    # How often the worker's beat rebuilds the statistics' device counters from MongoDB
    # (stats.recount_devices): repairs what a crash or a write outside the API left wrong.
    stats_recount_interval_s: float = Field(default=600.0, gt=0)
    # Deepest folder tree (a top-level folder has depth 1).
    folder_max_depth: int = Field(default=16, ge=1, le=100)

    @field_validator("mongodb_url")
    @classmethod
    def _valid_mongodb_url(cls, value: str) -> str:
        """Refuse a URL that the driver could not use, with the driver's reason."""
        if value.startswith("mongodb+srv://"):
            # Parsing an SRV URL resolves DNS; check its shape only.
            if value.removeprefix("mongodb+srv://").split("/")[0]:
                return value
            raise ValueError("not a MongoDB connection string; expected mongodb+srv://host")
        try:
            parse_uri(value)
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            raise ValueError(
                f"not a MongoDB connection string ({exc}); expected mongodb://host:port"
            ) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str) -> str:
        """Accept only the URL schemes redis-py understands."""
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://host:port/db, rediss://... or unix://...")
        return value

    @model_validator(mode="after")
    def _safe_outside_development(self) -> Settings:
        """The Firebase emulator skips signature checks, so it is for development and tests."""
        if self.firebase_auth_emulator_host and not self.is_dev_or_test:
            raise ValueError(
                "FIREBASE_AUTH_EMULATOR_HOST is set but ENVIRONMENT is "
                f"{self.environment!r}: the emulator accepts unsigned tokens, so it is "
                "refused outside development and test"
            )
        if (
            self.metrics_token is not None
            and len(self.metrics_token.get_secret_value()) < 16
            and not self.is_dev_or_test
        ):
            raise ValueError("METRICS_TOKEN is too short: use at least 16 random characters")
        if not self.is_dev_or_test:
            # Session tokens and the master token grant access: no guessable keys in production.
            if self.jwt_secret is None:
                raise ValueError("JWT_SECRET must be set outside development and test")
            secrets_ = {"JWT_SECRET": self.jwt_secret, "MASTER_TOKEN": self.master_token}
            for name, secret in secrets_.items():
                if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_CHARS:
                    raise ValueError(
                        f"{name} is too short: use at least {MIN_SECRET_CHARS} random characters "
                        "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                    )
        return self

    @field_validator("master_token")
    @classmethod
    def _master_token_not_a_device_key(cls, value: SecretStr | None) -> SecretStr | None:
        """A `dk_` token would be read as a device key and never reach the master check."""
        if value is not None and value.get_secret_value().startswith("dk_"):
            raise ValueError("MASTER_TOKEN must not start with dk_ (the device key prefix)")
        return value

    @field_validator("admin_email_domains")
    @classmethod
    def _valid_domains(cls, value: str) -> str:
        """Each entry must look like a domain name (no `@`, no spaces)."""
        for domain in _split_domains(value):
            if "@" in domain or " " in domain or "." not in domain:
                raise ValueError(f"not an email domain: {domain!r} (expected e.g. example.com)")
        return value

    @property
    def admin_domains(self) -> frozenset[str]:
        """The admin email domains, lower-cased."""
        return frozenset(_split_domains(self.admin_email_domains))

    @property
    def jwt_signing_key(self) -> str:
        """The key that signs and verifies session tokens."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return self._generated_jwt_secret

    @property
    def is_dev_or_test(self) -> bool:
        """True where convenience beats strictness (local runs and the test suite)."""
        return self.environment in ("development", "test")

    # --- readings (ingest, queries, presence) -------------------------------------------------
    readings_max_batch: int = Field(default=1000, ge=1, le=10_000)
    readings_max_future_skew_s: int = Field(default=300, ge=0)
    ingest_flush_interval_ms: float = Field(default=20.0, ge=0, le=1000)
    ingest_flush_max_docs: int = Field(default=5000, ge=1)
    ingest_flushes_in_flight: int = Field(default=4, ge=1, le=64)
    # Also flush at once when no flush is being written (and when the one being written
    # ends), instead of waiting the interval: readings gather while the database works.
    ingest_flush_when_idle: bool = True
    # After a write whose outcome is unknown (connection lost, failover, timeout), how long a
    # flush keeps querying back the readings' ids and inserting the missing ones before it
    # answers 503 (the request's Idempotency-Key is kept for the retry).
    ingest_reconcile_timeout_s: float = Field(default=15.0, ge=0, le=300)
    readings_history_max_limit: int = Field(default=1000, ge=1, le=10_000)
    readings_aggregate_max_buckets: int = Field(default=1000, ge=1, le=100_000)
    # Most buckets x metrics in one aggregate answer (memory of the answer).
    readings_aggregate_max_cells: int = Field(default=50_000, ge=1, le=10_000_000)
    # Distinct metric names one device may ever send; new names past it are refused.
    readings_max_metrics_per_device: int = Field(default=256, ge=1, le=10_000)
    # Longest time span one history page, aggregate or export may cover.
    readings_history_max_span_days: int = Field(default=366, ge=1)
    readings_aggregate_max_span_days: int = Field(default=3660, ge=1)
    readings_export_max_span_days: int = Field(default=366, ge=1)
    idempotency_ttl_hours: int = Field(default=24, ge=1)
    idempotency_wait_s: float = Field(default=10.0, gt=0)
    # Apply pending schema migrations at start-up instead of refusing to start (development
    # and tests; production runs `python -m app migrate` as a release step).
    migrations_auto_apply: bool = False
    # How long a keyed request owns its key before a retry may take it over (its owner died,
    # or the database went away before the key could be handed on). Longer than any request.
    idempotency_lease_s: float = Field(default=60.0, gt=0, le=3600)
    presence_throttle_s: float = Field(default=30.0, ge=0)
    # Seconds each API process may keep a device's context (product, telemetry schema,
    # presence, known metric names) at most (0 = read it every request). Schema changes and
    # devices moved or deleted reach every process over Redis at once; this bounds only
    # changes made in the database by hand. At most `readings_context_cache_max` are kept.
    readings_context_cache_s: float = Field(default=300.0, ge=0, le=86_400)
    readings_context_cache_max: int = Field(default=100_000, ge=1)
    # Seconds a device's latest values stay copied in Redis after their last write or fill
    # (0 = read device_latest in MongoDB every time). Flushes keep the copy current; this
    # bounds only a copy left behind while Redis was unreachable.
    latest_cache_s: float = Field(default=600.0, ge=0, le=86_400)
    # --- device commands (app/commands) --------------------------------------------------------
    # Longest `wait` a device's long-poll may ask for; longer waits are cut to it.
    commands_poll_max_wait_s: float = Field(default=30.0, ge=0, le=300)
    # Long-polls one API process holds at once; past it a poll answers 503 with Retry-After.
    commands_max_waiters: int = Field(default=10_000, ge=1, le=1_000_000)
    # A waiting poll looks at MongoDB again this often even if no wake-up arrives (a missed
    # Redis message, or Redis away, delays a command by at most this).
    commands_poll_recheck_s: float = Field(default=5.0, gt=0, le=300)
    # A delivered command not acknowledged within this goes back to the queue ...
    commands_ack_timeout_s: int = Field(default=30, ge=1, le=86_400)
    # ... up to this many deliveries in all, then it ends as `timeout`.
    commands_max_attempts: int = Field(default=3, ge=1, le=100)
    # Longest `ttl_s` a command may be sent with.
    commands_max_ttl_s: int = Field(default=7 * 86_400, ge=1, le=30 * 86_400)
    # Commands waiting (queued or delivered) per device; more are refused with 409.
    commands_max_pending_per_device: int = Field(default=100, ge=1, le=100_000)
    # Size caps of a command's params and of a device's result, as compact JSON.
    commands_params_max_bytes: int = Field(default=8192, ge=64, le=1_048_576)
    commands_result_max_bytes: int = Field(default=16_384, ge=64, le=1_048_576)
    # Finished commands (successful, failed, expired, timeout, cancelled) are kept this long.
    commands_retention_days: int = Field(default=30, ge=1)
    # How often the beat sweeps expiries, ack timeouts and retention (commands.sweep), and
    # how many commands one pass changes at most per state.
    commands_sweep_interval_s: float = Field(default=30.0, gt=0)
    commands_sweep_batch: int = Field(default=1000, ge=1, le=100_000)
    # --- alerts: rules, alarms, notifications (app/alerts) -----------------------------------
    # Most alert rules on one folder, product or device.
    alert_rules_per_scope_max: int = Field(default=50, ge=1, le=10_000)
    # Seconds a device's rule list is kept in memory; rule changes clear it at once over Redis.
    alert_rule_cache_s: float = Field(default=60.0, ge=0, le=3600)
    # Seconds between writes of incremental rule state (anomaly, rate) to MongoDB: what an API
    # crash can lose. for_s starts and alarm states are written at once.
    alert_state_flush_s: float = Field(default=5.0, gt=0, le=300)
    # (rule, device) states kept in memory per API process.
    alert_state_cache_max: int = Field(default=200_000, ge=100)
    # Largest anomaly `window` and most points a rate rule keeps per device.
    alert_anomaly_window_max: int = Field(default=10_000, ge=2)
    alert_rate_points_max: int = Field(default=1000, ge=2, le=100_000)
    # How often the beat checks no_data and for_s deadlines (alarms fire at most this late).
    alerts_sweep_interval_s: float = Field(default=15.0, gt=0, le=60)
    # Devices (or states) read per page by the sweep.
    alerts_sweep_page_size: int = Field(default=5000, ge=10, le=10_000)
    # Cleared alarms (and their delivery logs) are deleted this long after clearing.
    alarm_retention_days: int = Field(default=90, ge=1)
    # Webhook targets on private, loopback or link-local addresses are refused unless true.
    alert_webhook_allow_private: bool = False
    alert_webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    alert_webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    # Longest wait between two webhook attempts (exponential backoff from 1 s).
    alert_webhook_backoff_max_s: int = Field(default=600, ge=1)
    # Notification events not handed to a worker within this many seconds are re-enqueued.
    alert_notify_grace_s: int = Field(default=60, ge=1)
    # --- live streams (app/live: WS /api/v1/ws and the SSE readings stream) ------------------
    # The first message of a socket must be `auth`, within this many seconds.
    ws_auth_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # Messages waiting to be sent to one socket; past it the socket is cut (1013) or coalesced.
    ws_send_queue: int = Field(default=256, ge=1, le=100_000)
    ws_max_subscriptions: int = Field(default=50, ge=1, le=10_000)
    ws_max_connections_per_user: int = Field(default=20, ge=1, le=10_000)
    # Messages one socket may send per second (counted by the rate limiter).
    ws_messages_per_s: int = Field(default=20, ge=1, le=10_000)
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    # permessage-deflate on sockets (`python -m app`). Off: events are small JSON, and
    # compressing each one for each socket costs more CPU than fan-out itself.
    ws_compression: bool = False
    # A socket with no subscription and no message from its client for this long is closed.
    ws_idle_timeout_s: float = Field(default=300.0, gt=0)
    # `reauth` is sent this many seconds before the token expires.
    ws_reauth_notice_s: float = Field(default=60.0, ge=0)
    # How often every subscription's permission is checked again (grant removals end it).
    live_recheck_s: float = Field(default=2.0, gt=0, le=60)
    # Most devices one folder.devices subscription follows (the first by id).
    live_folder_max_devices: int = Field(default=1000, ge=1, le=100_000)
    # Readings kept per device in Redis for SSE `Last-Event-ID` resume (a capped stream).
    live_sse_buffer: int = Field(default=1000, ge=0, le=100_000)
    # Seconds between SSE keep-alive comments.
    live_sse_keepalive_s: float = Field(default=15.0, gt=0)
    # --- rate limiting (app/ratelimit) -------------------------------------------------------
    rate_limit_enabled: bool = True
    rate_limit_anonymous_limit: int = Field(default=60, ge=1)
    rate_limit_anonymous_window_s: float = Field(default=60, gt=0)
    rate_limit_user_limit: int = Field(default=100, ge=1)
    rate_limit_user_window_s: float = Field(default=60, gt=0)
    rate_limit_admin_limit: int = Field(default=10_000, ge=1)
    rate_limit_admin_window_s: float = Field(default=60, gt=0)
    rate_limit_device_limit: int = Field(default=600, ge=1)
    rate_limit_device_window_s: float = Field(default=60, gt=0)
    rate_limit_product_create_limit: int = Field(default=1, ge=1)
    rate_limit_product_create_window_s: float = Field(default=7200, gt=0)
    # Failed authentications (bad keys, bad tokens) per client address.
    rate_limit_auth_failures_limit: int = Field(default=30, ge=1)
    rate_limit_auth_failures_window_s: float = Field(default=60, gt=0)
    # Share invitations to email addresses, per inviting user.
    rate_limit_invites_limit: int = Field(default=20, ge=1)
    rate_limit_invites_window_s: float = Field(default=3600, gt=0)
    # The highest `ingest_limit_per_minute` a product may set for its devices.
    rate_limit_device_max: int = Field(default=6000, ge=1)
    rate_limit_key_prefix: str = Field(default="rl", pattern=r"^[A-Za-z0-9_.:-]{1,32}$")
    rate_limit_timeout_s: float = Field(default=0.25, gt=0, le=5)
    rate_limit_breaker_failures: int = Field(default=3, ge=1)
    rate_limit_breaker_cooldown_s: float = Field(default=5.0, gt=0)
    rate_limit_fallback_max_keys: int = Field(default=100_000, ge=100)
    upstash_redis_rest_url: str | None = None
    upstash_redis_rest_token: SecretStr | None = None
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_trusted_proxies(cls, value: object) -> object:
        """Accept `10.0.0.1, 10.1.0.0/16` or a JSON list; host bits in a CIDR are allowed."""
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text) if text.startswith("[") else text.split(",")
            value = [item.strip() for item in items if item.strip()]
        if isinstance(value, list | tuple):
            try:
                return [ip_network(str(item), strict=False) for item in value]
            except ValueError as exc:
                raise ValueError(f"not an IP address or CIDR range ({exc})") from None
        return value

    @model_validator(mode="after")
    def _outbox_kept_until_archived(self) -> Settings:
        """An entry is archived before it is deleted."""
        if self.outbox_retention_days < self.outbox_archive_after_days:
            raise ValueError(
                "OUTBOX_RETENTION_DAYS must be at least OUTBOX_ARCHIVE_AFTER_DAYS "
                f"({self.outbox_archive_after_days})"
            )
        return self

    @model_validator(mode="after")
    def _upstash_complete(self) -> Settings:
        """The Upstash REST URL needs its token, and HTTPS outside development and test."""
        url = self.upstash_redis_rest_url
        if url is None:
            return self
        if not self.upstash_redis_rest_token:
            raise ValueError("UPSTASH_REDIS_REST_URL is set but UPSTASH_REDIS_REST_TOKEN is not")
        allowed = ("https://", "http://") if self.is_dev_or_test else ("https://",)
        if not url.startswith(allowed):
            raise ValueError("UPSTASH_REDIS_REST_URL must be an https:// URL")
        return self


def _split_domains(value: str) -> list[str]:
    return [part.strip().lower().lstrip("@") for part in value.split(",") if part.strip()]


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
