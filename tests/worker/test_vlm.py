"""The optional VLM client against a local fake OpenAI-compatible server (aiohttp on 127.0.0.1): a good answer,
garbage, a 500, no answer in time, and the budget."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from cloud.worker.vlm import VlmClient, VlmConfig

GOOD = {"label": "person", "summary": "A man in a red jumper walks to the door.", "notify": True,
        "reason": "a person at the door at night", "threat_level": "low"}
JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"


@dataclass
class FakeOpenAI:
    url: str = ""
    mode: str = "good"
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        if self.mode == "500":
            return web.json_response({"error": {"message": "overloaded"}}, status=500)
        if self.mode == "hang":
            await self.release.wait()  # answers only when the test ends: the client must give up first
        if self.mode == "not-json":
            return web.Response(text="<html>gateway</html>", content_type="text/html")
        content = {"good": json.dumps(GOOD), "fenced": "```json\n" + json.dumps(GOOD) + "\n```",
                   "garbage": "I think there is a person, probably.",
                   "wrong-schema": json.dumps({**GOOD, "threat_level": "extreme", "notify": "yes"}),
                   "hang": json.dumps(GOOD)}[self.mode]
        return web.json_response({"id": "x", "object": "chat.completion",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


@pytest_asyncio.fixture()
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    fake.release.set()
    await runner.cleanup()


def client(fake: FakeOpenAI, **kw: Any) -> VlmClient:
    return VlmClient(VlmConfig(base_url=fake.url, model="llava", api_key="sk-test", **kw))


async def test_good_answer_and_request_shape(fake_openai: FakeOpenAI) -> None:
    vlm = client(fake_openai)
    verdict = await vlm.review([JPEG, JPEG, JPEG, JPEG], "alert me about people at night", "person (0.81)")
    await vlm.close()
    assert verdict is not None and verdict.model_dump() == GOOD
    body = fake_openai.requests[0]
    assert body["model"] == "llava" and body["response_format"] == {"type": "json_object"}
    user = body["messages"][1]["content"]
    assert "alert me about people at night" in user[0]["text"] and "person (0.81)" in user[0]["text"]
    images = [c["image_url"]["url"] for c in user[1:]]
    assert len(images) == 3  # max_frames
    assert base64.b64decode(images[0].removeprefix("data:image/jpeg;base64,")) == JPEG
    assert fake_openai.headers[0]["Authorization"] == "Bearer sk-test"
    assert vlm.calls == 1 and vlm.last_error is None


async def test_fenced_json_is_accepted(fake_openai: FakeOpenAI) -> None:
    fake_openai.mode = "fenced"
    vlm = client(fake_openai)
    assert (await vlm.review([JPEG], "", "person")) is not None
    await vlm.close()


@pytest.mark.parametrize(("mode", "error"), [("garbage", "unusable answer"), ("wrong-schema", "unusable answer"),
                                             ("not-json", "unusable answer"), ("500", "HTTP 500")])
async def test_bad_answers_give_none(fake_openai: FakeOpenAI, mode: str, error: str) -> None:
    fake_openai.mode = mode
    vlm = client(fake_openai)
    assert await vlm.review([JPEG], "people", "person (0.7)") is None
    await vlm.close()
    assert vlm.last_error is not None and error in vlm.last_error


async def test_timeout_gives_none(fake_openai: FakeOpenAI) -> None:
    fake_openai.mode = "hang"
    vlm = client(fake_openai, timeout_s=0.3)
    assert await vlm.review([JPEG], "people", "person (0.7)") is None
    await vlm.close()
    assert vlm.last_error == "no answer within 0.3 s" and len(fake_openai.requests) == 1


async def test_budget_and_worth_asking(fake_openai: FakeOpenAI) -> None:
    vlm = client(fake_openai, max_calls=1, api_key_header="api-key", api_version="2024-10-21")
    assert vlm.worth_asking(0.5) and not vlm.worth_asking(0.2) and not vlm.worth_asking(None)
    assert await vlm.review([JPEG], "people", "person") is not None
    assert fake_openai.headers[0]["api-key"] == "sk-test"  # Azure OpenAI style
    assert await vlm.review([JPEG], "people", "person") is None
    assert vlm.last_error == "budget spent" and len(fake_openai.requests) == 1 and not vlm.worth_asking(0.9)
    assert await vlm.review([], "people", "person") is None
    await vlm.close()


async def test_unreachable_server_gives_none() -> None:
    vlm = VlmClient(VlmConfig(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=2))
    assert await vlm.review([JPEG], "people", "person") is None
    await vlm.close()
    assert vlm.last_error is not None and vlm.last_error.startswith("request failed")
