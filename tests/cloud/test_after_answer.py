"""cloud.api.after_answer: work a handler leaves for after its answer starts only once the answer is written
(finalize's queue message must not delay the hub's answer), and at once outside a request."""

from __future__ import annotations

import httpx
from aiohttp import web

from cloud.api.after_answer import after_answer
from cloud.api.web.middleware import answer_first, json_errors


async def test_outside_a_request_the_work_runs_at_once() -> None:
    ran: list[int] = []
    after_answer(lambda: ran.append(1))
    assert ran == [1]


async def test_inside_a_request_the_work_starts_after_the_answer_is_written() -> None:
    seen: list[tuple[str, bool]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.json_response({"ok": True})
        after_answer(lambda: seen.append(("after", response.prepared)))
        seen.append(("handler", response.prepared))
        return response

    app = web.Application(middlewares=[answer_first, json_errors])
    app.router.add_post("/x", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            r = await http.post("/x")
            assert r.status_code == 200 and r.json() == {"ok": True}
            assert (await http.post("/x")).json() == {"ok": True}  # the connection is still usable
    finally:
        await runner.cleanup()
    assert seen == [("handler", False), ("after", True)] * 2
