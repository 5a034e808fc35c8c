"""The cloud API's configuration: one YAML file, validated, with documented defaults.

`config/cloud.example.yaml` documents every key; this schema is the source of truth for defaults and types.
Environment variables override the file: ``PINGWATCH_CLOUD_<SECTION>__<KEY>=value`` (double underscore between
levels), e.g. ``PINGWATCH_CLOUD_DATABASE__URL=postgresql+psycopg://...``. Values are parsed as YAML scalars.
Secrets (the database password, a storage connection string) are best given this way rather than in the file.

The loader is the hub's (pingwatch_common.configfile: line numbers in errors, unknown keys refused), shared
through a package that neither program owns, since the cloud must not depend on the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# ConfigError is this program's config error too (raised by the shared loader; callers import it from here).
from pingwatch_common.configfile import ConfigError as ConfigError
from pingwatch_common.configfile import ConfigFormat, load_model

ENV_PREFIX = "PINGWATCH_CLOUD_"


class _Section(BaseModel):
    # Unknown keys are almost always typos; silently ignoring them would hide a misconfiguration.
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerConfig(_Section):
    host: str = Field(default="127.0.0.1", description="Address the API binds; put a TLS-terminating proxy in front.")
    port: int = Field(default=8600, ge=1, le=65535, description="HTTP port of the API.")
    max_body_bytes: int = Field(
        default=65536, ge=1024, le=16 * 1024 * 1024, description="Largest accepted request body."
    )
    public_url: str | None = Field(
        default=None, description="The URL users and hubs reach (shown by `run`); default: host:port."
    )
    trust_forwarded_for: bool = Field(
        default=False, description="Take the client address from X-Forwarded-For (only behind a proxy that sets it)."
    )


class DatabaseConfig(_Section):
    url: str = Field(
        default="sqlite:///data-cloud/cloud.db",
        description="SQLAlchemy URL: sqlite:///path (one API process) or postgresql+psycopg://user@host/db.",
    )
    pool_size: int = Field(
        default=5, ge=1, le=64, description="Connections (and DB threads) per API process (PostgreSQL)."
    )
    migrate_on_start: bool = Field(default=False, description="Apply pending migrations when the API starts.")


class StorageConfig(_Section):
    credential: Literal["account_key", "azure_identity"] = Field(
        default="account_key",
        description="account_key: Azurite/dev, SAS signed with the key. azure_identity: user-delegation SAS (prod).",
    )
    connection_string: str | None = Field(
        default=None,
        description="Azure Storage connection string (Azurite's for dev); gives the endpoints and the key.",
    )
    blob_url: str | None = Field(
        default=None, description="Blob endpoint, e.g. https://<account>.blob.core.windows.net"
    )
    queue_url: str | None = Field(
        default=None, description="Queue endpoint, e.g. https://<account>.queue.core.windows.net"
    )
    account_name: str | None = Field(
        default=None, description="Storage account name (account_key mode without a connection string)."
    )
    account_key: str | None = Field(
        default=None, description="Storage account key (account_key mode without a connection string)."
    )
    container: str = Field(
        default="clips", pattern=r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$", description="Blob container."
    )
    queue: str = Field(
        default="events", pattern=r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$", description="Job queue name."
    )
    upload_url_ttl_s: int = Field(default=900, ge=1, le=900, description="Lifetime of an upload SAS (15 min at most).")
    read_url_ttl_s: int = Field(default=300, ge=1, le=3600, description="Lifetime of a playback/snapshot read SAS.")
    retry_total: int = Field(
        default=2, ge=0, le=10, description="SDK retries per storage call (short: the hub and the reconciler retry)."
    )
    connection_timeout_s: float = Field(default=5, gt=0, le=60, description="Storage connect timeout.")

    @model_validator(mode="after")
    def _endpoints(self) -> StorageConfig:
        if self.credential == "account_key":
            if not self.connection_string and not (self.blob_url and self.account_name and self.account_key):
                raise ValueError(
                    "account_key mode needs connection_string, or blob_url + queue_url + account_name + account_key"
                )
        elif not (self.blob_url and self.queue_url):
            raise ValueError("azure_identity mode needs blob_url and queue_url")
        return self


class PlanConfig(_Section):
    monthly_credits: int = Field(..., ge=0, description="Credits granted each calendar month (1 credit = 10 s).")
    max_uploads_per_hour: int = Field(..., ge=1, description="Events a hub account may start per rolling hour.")
    max_clip_s: float = Field(..., gt=0, le=3600, description="Longest clip accepted (seconds).")
    max_size_bytes: int = Field(..., ge=1024, description="Largest clip accepted (bytes).")
    retention_days: float = Field(..., gt=0, description="Events and clips older than this are deleted.")


def _default_plans() -> dict[str, PlanConfig]:
    return {
        "free": PlanConfig(monthly_credits=360, max_uploads_per_hour=20, max_clip_s=60,
                           max_size_bytes=50 * 1024 * 1024, retention_days=7),
        "paid": PlanConfig(monthly_credits=30000, max_uploads_per_hour=120, max_clip_s=300,
                           max_size_bytes=250 * 1024 * 1024, retention_days=30),
    }


class AuthConfig(_Section):
    token_ttl_hours: float = Field(
        default=720, gt=0, description="A user's bearer token expires this long after log-in."
    )
    link_code_ttl_s: int = Field(default=600, ge=60, le=3600, description="How long a hub link code stays valid.")
    login_window_s: int = Field(default=900, ge=1, description="Window in which failed log-ins are counted.")
    login_max_failures_per_account: int = Field(default=5, ge=1, description="Failed log-ins per account per window.")
    login_max_failures_per_source: int = Field(
        default=20, ge=1, description="Failed log-ins per client address per window."
    )
    link_requests_per_source: int = Field(
        default=30, ge=1, description="Link codes one client address may request per window (unauthenticated)."
    )
    argon2_time_cost: int = Field(default=3, ge=1, le=20, description="Argon2id passes (password hashing cost).")
    argon2_memory_kib: int = Field(default=65536, ge=8, description="Argon2id memory per hash (KiB).")


class RetentionConfig(_Section):
    enabled: bool = Field(default=True, description="Run the retention job in this API process.")
    interval_min: float = Field(default=60, gt=0, description="How often expired events and clips are deleted.")
    abandoned_upload_hours: float = Field(
        default=24, gt=0, description="Events still uploading after this are deleted."
    )
    batch: int = Field(default=500, ge=1, description="Events deleted per pass at most (the next pass continues).")


class ReconcilerConfig(_Section):
    enabled: bool = Field(default=True, description="Run the queue reconciler in this API process.")
    interval_s: float = Field(default=30, gt=0, description="How often queued events without a message are re-sent.")
    claim_timeout_s: float = Field(default=60, gt=0, description="A send claimed longer ago than this is tried again.")


class VlmSection(_Section):
    enabled: bool = Field(default=False, description="Ask a vision-language model for a second opinion (optional).")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 (Ollama)."
    )
    model: str | None = Field(default=None, description="Model or deployment name, e.g. llava:7b or gpt-4o-mini.")
    api_key: str | None = Field(default=None, description="API key (give it as PINGWATCH_CLOUD_WORKER__VLM__API_KEY).")
    api_key_header: str = Field(default="Authorization", description="Header of the key; Azure OpenAI: api-key.")
    api_version: str | None = Field(default=None, description="Azure OpenAI's api-version, e.g. 2024-10-21.")
    timeout_s: float = Field(default=8, gt=0, le=120, description="An answer later than this is ignored.")
    max_calls: int = Field(default=1000, ge=0, description="Calls per worker process at most (the budget).")
    max_frames: int = Field(default=3, ge=1, le=10, description="Key frames shown per event.")
    min_score: float = Field(
        default=0.35, ge=0, le=1, description="Asked only when the detector saw something at least this likely."
    )

    @model_validator(mode="after")
    def _needs_endpoint(self) -> VlmSection:
        if self.enabled and not (self.base_url and self.model):
            raise ValueError("worker.vlm.enabled needs base_url and model")
        return self


class WorkerConfig(_Section):
    model_path: str | None = Field(
        default=None, description="Ultralytics YOLO ONNX model; default $PINGWATCH_WORKER_MODEL, else the bundled one."
    )
    concurrency: int = Field(default=1, ge=1, le=32, description="Jobs one worker process runs at once.")
    visibility_timeout_s: int = Field(
        default=60, ge=2, le=3600, description="A received message stays hidden this long; renewed while a job runs."
    )
    poll_interval_s: float = Field(default=2, gt=0, le=60, description="Wait after an empty receive.")
    max_deliveries: int = Field(
        default=5, ge=1, le=100, description="After this many deliveries a message goes to <queue>-poison."
    )
    retry_delay_s: int = Field(
        default=30, ge=0, le=3600, description="A job that failed for a passing reason is retried after this."
    )
    shutdown_grace_s: float = Field(
        default=20, ge=0, le=3600, description="On SIGTERM, running jobs may finish this long; then they are released."
    )
    timezone: str = Field(default="UTC", description="Time zone of the hours in users' prompts (IANA name).")
    min_confidence: float = Field(default=0.6, gt=0, le=1, description="A label is reported at or above this score.")
    batch_size: int = Field(default=1, ge=1, le=64, description="Frames per detector call (pays on a GPU only).")
    vlm: VlmSection = VlmSection()

    @model_validator(mode="after")
    def _zone(self) -> WorkerConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"worker.timezone '{self.timezone}' is not an IANA time zone (e.g. Europe/Paris)") from None
        return self


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class TelegramConfig(_Section):
    enabled: bool = Field(default=False, description="Send alerts through a Telegram bot (`pingwatch-cloud notify`).")
    bot_token: str | None = Field(
        default=None, description="The bot's token from @BotFather (give it as PINGWATCH_CLOUD_TELEGRAM__BOT_TOKEN)."
    )
    bot_username: str | None = Field(
        default=None, description="The bot's @username for t.me deep links; default: asked from Telegram (getMe)."
    )
    api_base_url: str = Field(
        default="https://api.telegram.org/bot", description="Bot API base (a local Bot API server or a test fake)."
    )
    api_file_url: str = Field(default="https://api.telegram.org/file/bot", description="Bot API file base.")
    mode: Literal["polling", "webhook"] = Field(
        default="polling", description="polling: development (no public URL). webhook: production (server.public_url)."
    )
    webhook_secret: str | None = Field(
        default=None, min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_-]+$",
        description="Secret Telegram sends with each webhook call (X-Telegram-Bot-Api-Secret-Token); webhook mode.",
    )
    link_ttl_s: int = Field(default=600, ge=60, le=3600, description="How long a chat link token stays valid.")
    min_interval_s: float = Field(
        default=1.0, ge=0, le=60, description="At most one message per chat this often (Telegram's own limit)."
    )
    global_per_s: float = Field(default=25, gt=0, le=30, description="Messages per second over all chats at most.")
    max_video_mb: float = Field(
        default=50, gt=0, le=50, description="Larger clips are sent as a link to the cloud page (Bot API limit 50)."
    )
    command_timeout_s: float = Field(
        default=60, ge=5, le=600, description="A command the hub has not fetched by then is answered 'hub offline'."
    )

    @model_validator(mode="after")
    def _complete(self) -> TelegramConfig:
        if self.enabled and not self.bot_token:
            raise ValueError("telegram.enabled needs bot_token (PINGWATCH_CLOUD_TELEGRAM__BOT_TOKEN)")
        if self.enabled and self.mode == "webhook" and not self.webhook_secret:
            raise ValueError("telegram.mode webhook needs webhook_secret")
        return self


class CloudConfig(_Section):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = Field(
        default_factory=lambda: StorageConfig(connection_string=AZURITE_CONNECTION_STRING)
    )
    default_plan: str = Field(default="free", description="Plan of a new account.")
    plans: dict[str, PlanConfig] = Field(default_factory=_default_plans)
    auth: AuthConfig = AuthConfig()
    retention: RetentionConfig = RetentionConfig()
    reconciler: ReconcilerConfig = ReconcilerConfig()
    worker: WorkerConfig = WorkerConfig()
    telegram: TelegramConfig = TelegramConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="before")
    @classmethod
    def _merge_plans(cls, data: Any) -> Any:
        """Plans given in the file (or env) are laid over the built-in free and paid plans key by key, so
        ``PINGWATCH_CLOUD_PLANS__FREE__MONTHLY_CREDITS=100`` changes one number; a new plan names every key."""
        if isinstance(data, dict) and isinstance(data.get("plans"), dict):
            merged: dict[str, Any] = {k: v.model_dump() for k, v in _default_plans().items()}
            for name, plan in data["plans"].items():
                base = merged.get(name, {})
                merged[name] = {**base, **plan} if isinstance(plan, dict) else plan
            data = {**data, "plans": merged}
        return data

    @model_validator(mode="after")
    def _plans(self) -> CloudConfig:
        if self.default_plan not in self.plans:
            raise ValueError(f"default_plan '{self.default_plan}' is not among plans ({', '.join(self.plans)})")
        return self

    def plan(self, name: str) -> PlanConfig:
        """An account's plan; a plan since removed from the config falls back to the default plan."""
        return self.plans.get(name) or self.plans[self.default_plan]

    def resolve_paths(self, base: Path) -> CloudConfig:
        """A relative SQLite path in the file is relative to the file, not to wherever the API was started."""
        prefix = "sqlite:///"
        url = self.database.url
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
            self.database.url = prefix + str((base / url[len(prefix):]).resolve())
        return self


# Azurite's published development account (documented by Microsoft; not a secret). The default storage points at
# a local Azurite on its standard ports so that `pingwatch-cloud run` works out of the box on a dev machine.
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
)


_FORMAT = ConfigFormat(
    env_prefix=ENV_PREFIX, example="config/cloud.example.yaml",
    missing_hint="copy config/cloud.example.yaml to start one", sections="server:, database:",
)


def load_config(path: Path | None, environ: dict[str, str] | None = None) -> CloudConfig:
    """Load and validate ``path`` (None: defaults only). Raises ConfigError with one actionable line."""
    config = load_model(CloudConfig, path, _FORMAT, environ)
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    return config.resolve_paths(base)
