"""Optional second opinion from a vision-language model behind an OpenAI-compatible chat-completions endpoint
(Azure OpenAI, Ollama, vLLM, OpenAI).

It sees a few key frames (JPEG, base64 data URLs) with the user's prompt and the detector's findings, and must
answer strict JSON ``{label, summary, notify, reason, threat_level}``. It never gates an alert: the caller sends
the local result first and uses this only as an edit. Anything but a valid, timely answer (timeout, 4xx/5xx,
garbage, wrong schema, budget spent) returns None, and ``last_error`` says why.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pingwatch_common.aio import within

log = logging.getLogger(__name__)

SYSTEM = ("You review home security camera frames. Answer only with one JSON object with exactly these keys: "
          '"label" (the main thing seen, one or two words, or "nothing"), "summary" (one sentence), '
          '"notify" (true or false: does this match what the user asked to be alerted about), "reason" (short), '
          '"threat_level" ("none", "low", "medium" or "high"). No other text.')


class VlmVerdict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    label: str = Field(min_length=1, max_length=60)
    summary: str = Field(min_length=1, max_length=500)
    notify: bool
    reason: str = Field(max_length=300)
    threat_level: Literal["none", "low", "medium", "high"]


@dataclass(frozen=True)
class VlmConfig:
    base_url: str  # e.g. http://127.0.0.1:11434/v1 (Ollama) or https://<res>.openai.azure.com/openai/deployments/<d>
    model: str
    api_key: str = ""
    api_key_header: str = "Authorization"  # Azure OpenAI: "api-key"
    api_version: str | None = None  # Azure OpenAI: e.g. "2024-10-21" (sent as ?api-version=)
    timeout_s: float = 8.0
    max_calls: int = 100  # budget per client (per worker process / billing period, as the caller decides)
    max_frames: int = 3
    min_score: float = 0.35  # ask only when the detector saw something at least this likely


def _strip_fences(text: str) -> str:
    m = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    return (m.group(1) if m else text).strip()


class VlmClient:
    def __init__(self, config: VlmConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(config.timeout_s))
        self._own_client = client is None
        self.calls = 0
        self.last_error: str | None = None

    @property
    def budget_left(self) -> int:
        return max(0, self.config.max_calls - self.calls)

    def worth_asking(self, best_score: float | None) -> bool:
        """Only events where the detector saw something (the VLM costs money and time)."""
        return best_score is not None and best_score >= self.config.min_score and self.budget_left > 0

    def _request(self, frames: Sequence[bytes], prompt: str, findings: str) -> tuple[str, dict[str, Any],
                                                                                    dict[str, str]]:
        content: list[dict[str, Any]] = [{"type": "text", "text": (
            f"The user asked: {prompt or 'alert me about people'}\n"
            f"The detector found: {findings}\nLook at the frames and answer with the JSON object.")}]
        for jpeg in frames[: self.config.max_frames]:
            url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
            content.append({"type": "image_url", "image_url": {"url": url}})
        body = {"model": self.config.model, "temperature": 0, "max_tokens": 300,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]}
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers[self.config.api_key_header] = (f"Bearer {self.config.api_key}"
                                                   if self.config.api_key_header.lower() == "authorization"
                                                   else self.config.api_key)
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        if self.config.api_version:
            url += f"?api-version={self.config.api_version}"
        return url, body, headers

    async def review(self, frames: Sequence[bytes], prompt: str, findings: str) -> VlmVerdict | None:
        """The model's verdict, or None (``last_error`` says why). Spends one call of the budget per request."""
        self.last_error = None
        if not frames:
            self.last_error = "no frames to show"
            return None
        if self.budget_left <= 0:
            self.last_error = "budget spent"
            return None
        self.calls += 1
        url, body, headers = self._request(frames, prompt, findings)
        try:
            resp = await within(self._client.post(url, json=body, headers=headers), self.config.timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            self.last_error = f"no answer within {self.config.timeout_s:g} s"
            return None
        except httpx.HTTPError as exc:
            self.last_error = f"request failed: {type(exc).__name__}: {exc}"
            return None
        if resp.status_code != 200:
            self.last_error = f"HTTP {resp.status_code}"
            return None
        try:
            text = resp.json()["choices"][0]["message"]["content"]
            verdict = VlmVerdict.model_validate(json.loads(_strip_fences(text)))
        except (ValueError, KeyError, IndexError, TypeError, ValidationError) as exc:
            self.last_error = f"unusable answer: {type(exc).__name__}: {str(exc)[:160]}"
            return None
        return verdict

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()
