"""The ``telegram:`` section of ``hub.yaml``: the hub's own bot, for alerts straight from the hub (no cloud).

Imports nothing from the hub, so ``hub.config`` can embed it (``telegram: TelegramConfig = TelegramConfig()``)
without a circle.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

TELEGRAM_API = "https://api.telegram.org"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class TelegramConfig(BaseModel):
    # Unknown keys are almost always typos (as in every hub.yaml section).
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = Field(False, description="Alert Telegram chats straight from the hub (no cloud needed).")
    bot_token: str | None = Field(
        None, description="The bot's token from @BotFather (PINGWATCH_TELEGRAM__BOT_TOKEN keeps it out of files).")
    bot_username: str | None = Field(
        None, description="The bot's @name for the link 'pingwatch telegram link' shows; default: asked of Telegram.")
    allowed_chat_ids: list[int] = Field(
        [], description="Chats linked by configuration: they get alerts and may command the hub without "
                        "'pingwatch telegram link' (chats linked that way are kept in the database).")
    muted_cameras: list[str] = Field([], description="Camera ids that never alert on Telegram (they still record).")
    api_url: str = Field(TELEGRAM_API, description="The Bot API server (a self-hosted one, or a test double).")
    min_interval_s: float = Field(1.0, ge=0, le=60, description="Least time between two messages to one chat "
                                                                "(Telegram allows about one a second).")
    poll_timeout_s: int = Field(30, ge=0, le=50, description="Long-polling wait of each getUpdates call.")
    late_after_s: float = Field(60.0, gt=0, description="An alert sent later than this after the event, or "
                                                       "after a failed try, is marked late.")
    max_video_mb: float = Field(50.0, gt=0, le=50, description="Clips larger than this are announced as text "
                                                              "(Telegram refuses bot uploads over 50 MB).")
    retry_base_s: float = Field(2.0, gt=0, le=600, description="First wait after a failed send; doubles each try.")
    retry_max_s: float = Field(300.0, gt=0, le=86_400, description="Longest wait between two tries of a send.")
    give_up_after_s: float = Field(
        86_400.0, gt=0, description="An alert that could not be sent this long after its event is dropped "
                                    "(it stays in the hub's timeline).")

    @field_validator("api_url")
    @classmethod
    def _secure_api(cls, v: str) -> str:
        v = v.rstrip("/")
        parts = urlsplit(v)
        local_http = parts.scheme == "http" and parts.hostname in _LOOPBACK
        if not parts.hostname or not (parts.scheme == "https" or local_http):
            raise ValueError("the Bot API must be https:// (plain http only on this machine, for testing)")
        return v

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, v: str | None) -> str | None:
        if v is not None and (":" not in v or not v.split(":", 1)[0].isdigit()):
            raise ValueError("a bot token looks like 123456789:AA... (from @BotFather)")
        return v

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.bot_token)

    @property
    def base_url(self) -> str:
        return f"{self.api_url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.api_url}/file/bot"
