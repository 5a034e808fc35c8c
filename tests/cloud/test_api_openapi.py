"""The OpenAPI document (generated from the route registry and the pydantic models) and bad input thrown at
every route: a schemathesis run from the document, and hand-made malformed requests. No input gets a 5xx."""

from __future__ import annotations

import asyncio
import json
import socket

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from cloud.api.app import ROUTES
from tests.cloud.conftest import Clip, CloudApi

# Per operation and generation mode; about 20 operations, so a few hundred cases in all.
EXAMPLES_PER_OPERATION = {"positive": 12, "negative": 8}


async def test_document_is_valid_openapi_and_lists_every_route(api: CloudApi):
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    r = await api.http.get("/api/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    OPENAPI_31_VALIDATOR.validate(doc)  # the OpenAPI 3.1 meta-schema (document structure)
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name  # every model's JSON Schema is itself valid
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(r.method, r.path) for r in ROUTES}
    initiate = doc["paths"]["/api/v1/events"]["post"]
    assert initiate["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventInitiate"}
    assert {"201", "400", "401", "402", "404", "413", "429"} <= set(initiate["responses"])
    assert doc["components"]["schemas"]["EventInitiate"]["properties"]["mime"]["enum"] == ["video/mp4", "video/webm"]
    params = {p["name"] for p in doc["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert params == {"hub_id", "camera_id", "label", "state", "since", "until", "cursor", "limit"}


async def test_answers_match_the_documented_schemas(api: CloudApi, mp4_clip: Clip):
    """The response models really describe what the API sends (one call per response model)."""
    doc = (await api.http.get("/api/openapi.json")).json()
    components = doc["components"]["schemas"]

    def check(path: str, method: str, status: int, body: object) -> None:
        ref = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]["$ref"]
        schema = {**components[ref.rsplit("/", 1)[1]], "$defs": components}
        text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
        jsonschema_rs.validator_for(json.loads(text)).validate(body)

    hub = await api.hub()
    ticket = await api.uploaded_event(hub, mp4_clip)
    check("/api/v1/events", "post", 201, ticket)
    check("/api/v1/events/{event_id}/finalize", "post", 200, (await api.finalize(hub, ticket["id"])).json())
    check("/api/v1/events/{event_id}", "get", 200,
          (await api.http.get(f"/api/v1/events/{ticket['id']}", headers=hub.user.headers)).json())
    check("/api/v1/events", "get", 200, (await api.http.get("/api/v1/events", headers=hub.user.headers)).json())
    check("/api/v1/hubs", "get", 200, (await api.http.get("/api/v1/hubs", headers=hub.user.headers)).json())
    check("/api/v1/account", "get", 200, (await api.http.get("/api/v1/account", headers=hub.user.headers)).json())
    check("/api/v1/hub", "get", 200, (await api.http.get("/api/v1/hub", headers=hub.headers)).json())
    r = await api.finalize(hub, "00000000-0000-4000-8000-000000000000")
    check("/api/v1/events/{event_id}/finalize", "post", 404, r.json())


async def test_schemathesis_finds_no_server_error(api_factory):
    import schemathesis
    from schemathesis import GenerationMode

    # Generous limits: the fuzzer logs in (and fails) and asks for link codes from one address many times.
    api = await api_factory(auth={"login_max_failures_per_source": 100000, "login_max_failures_per_account": 100000,
                                  "link_requests_per_source": 100000})
    hub = await api.hub()
    doc = (await api.http.get("/api/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(doc).exclude(path="/api/v1/auth/logout")  # it would end the session
    token_for = {"userToken": hub.user.headers, "hubToken": hub.headers}
    server_errors: list[str] = []
    calls: dict[str, int] = {}

    def fuzz(operation, mode: GenerationMode) -> None:
        # With the right token for the route, so the cases get past authentication into validation and the
        # services (missing and wrong tokens are covered by the tests above).
        security = operation.definition.raw.get("security") or [{}]
        headers = dict(token_for.get(next(iter(security[0]), ""), {}))
        key = f"{operation.method.upper()} {operation.path}"

        @settings(max_examples=EXAMPLES_PER_OPERATION[mode.value], deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode))
        def run(case) -> None:
            response = case.call(base_url=api.base_url, headers=headers, timeout=30)
            calls[key] = calls.get(key, 0) + 1
            if response.status_code >= 500:
                server_errors.append(f"{response.status_code} {case.as_curl_command(headers=headers)}\n{response.text}")

        try:
            run()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # nothing to get wrong (no parameters, no body)

    def fuzz_all() -> None:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(operation, mode)

    # The server runs on this event loop; the fuzzer's blocking HTTP calls run in a thread.
    await asyncio.to_thread(fuzz_all)
    assert server_errors == [], "\n\n".join(server_errors[:5])
    assert set(calls) == {f"{r.method} {r.path}" for r in ROUTES} - {"POST /api/v1/auth/logout"}
    assert sum(calls.values()) >= 200


async def test_raw_malformed_requests_get_4xx(api: CloudApi):
    """Things an HTTP client library would refuse to send: sent over a raw socket."""
    host, port = "127.0.0.1", int(api.base_url.rsplit(":", 1)[1])
    user = await api.account()
    requests = [
        # A non-UTF-8 token in the Authorization header.
        b"GET /api/v1/account HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xfd\r\nConnection: close\r\n\r\n",
        # A valid token preceded by Latin-1 bytes.
        b"GET /api/v1/account HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe9" + user.token.encode()
        + b"\r\nConnection: close\r\n\r\n",
        # Percent-encoded invalid UTF-8 and a NUL in the query string.
        b"GET /api/v1/events?label=%ff%fe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + user.token.encode()
        + b"\r\nConnection: close\r\n\r\n",
        b"GET /api/v1/events?cursor=%00 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + user.token.encode()
        + b"\r\nConnection: close\r\n\r\n",
        # A lone surrogate in a path segment (percent-encoded CESU-8).
        b"GET /api/v1/events/%ed%a0%80 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + user.token.encode()
        + b"\r\nConnection: close\r\n\r\n",
        # A body that says it is bigger than the limit.
        (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length: 100000000\r\nConnection: close\r\n\r\n{"),
    ]
    for raw in requests:
        status = await asyncio.to_thread(_raw_status, host, port, raw)
        assert 400 <= status < 500, (raw[:80], status)


def _raw_status(host: str, port: int, raw: bytes) -> int:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/events/00000000-0000-4000-8000-000000000000/x"])
async def test_unknown_paths_are_json_404(api: CloudApi, path):
    r = await api.http.get(path)
    assert r.status_code == 404 and r.json()["reason"] == "not_found"


async def test_wrong_method_is_json_405(api: CloudApi):
    r = await api.http.delete("/api/v1/account")
    assert r.status_code == 405 and r.json()["reason"] == "method_not_allowed"
