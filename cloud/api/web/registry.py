"""A small route registry: each route declares its auth, request models and response model once; the same
declaration validates requests, serialises answers and generates the OpenAPI document (web/openapi.py).

The aiohttp handler made for a route does, in this order: authenticate (401 before anything about the body is
revealed), check path ids, parse the query into its model, parse the body (bytes straight into the pydantic
model: invalid UTF-8, lone surrogates and deep nesting are refused by the parser), call the route's handler, and
serialise its answer with the declared response model.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ValidationError

from cloud.api import errors
from cloud.api.principals import HubCaller, HubClaim, StaleHubClaim, User
from cloud.api.services.hubs import hub_token_refused

if TYPE_CHECKING:
    from cloud.api.app import Services

# "hub_claim": a hub token, checked by the handler's own first statement (principals.HubClaim) instead of a
# lookup of its own: for the two calls of every upload. Its 401 can come after a 400/404 about the request.
AuthKind = Literal["none", "user", "hub", "hub_claim"]
Handler = Callable[["Call"], Awaitable["BaseModel | web.StreamResponse | None"]]

_PATH_PARAM = re.compile(r"\{(\w+)\}")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
SERVICES_KEY: web.AppKey[Services] = web.AppKey("services", object)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: AuthKind = "none"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    description: str | None = None
    # A larger body than server.max_body_bytes for this one route (a snapshot inside the JSON); None: the default.
    max_body_bytes: int | None = None

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


@dataclass
class Call:
    """One request as a handler sees it: parsed, validated and authenticated."""

    request: web.Request
    services: Services
    body: Any = None
    query: Any = None
    params: dict[str, str] = field(default_factory=dict)
    _user: User | None = None
    _hub: HubCaller | None = None
    _claim: HubClaim | None = None

    @property
    def user(self) -> User:
        assert self._user is not None, "route declared without auth='user'"
        return self._user

    @property
    def hub(self) -> HubCaller:
        assert self._hub is not None, "route declared without auth='hub'"
        return self._hub

    @property
    def hub_claim(self) -> HubClaim:
        assert self._claim is not None, "route declared without auth='hub_claim'"
        return self._claim

    def client_address(self) -> str:
        req = self.request
        if self.services.ctx.config.server.trust_forwarded_for:
            # The proxy appends the address it saw; entries to its left came from the client and can be forged.
            forwarded = [p.strip() for p in req.headers.get("X-Forwarded-For", "").split(",") if p.strip()]
            if forwarded:
                return forwarded[-1][:100]
        return (req.remote or "unknown")[:100]


def bearer_token(request: web.Request) -> str:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.Unauthenticated("missing bearer token", "send 'Authorization: Bearer <token>'",
                                     reason="missing_token")
    if not _TOKEN.match(token):  # also keeps non-ASCII / undecodable header bytes away from hashing and SQL
        raise errors.Unauthenticated("malformed bearer token", "send the token exactly as it was issued",
                                     reason="malformed_token")
    return token


def _validation_message(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return "malformed JSON", "send a UTF-8 JSON object"
    loc = ".".join(str(p) for p in first["loc"]) or "(body)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field '{loc}': {first['msg']}{more}", "see /api/openapi.json for the expected shape"


def parse_model(model: type[BaseModel], raw: bytes | dict[str, Any], where: str) -> BaseModel:
    try:
        if isinstance(raw, bytes):
            return model.model_validate_json(raw)
        return model.model_validate(raw)
    except ValidationError as exc:
        msg, hint = _validation_message(exc)
        raise errors.InvalidInput(f"{where}: {msg}", hint, reason="invalid_input") from None


async def _read_limited(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise errors.TooLarge(f"request body too large (limit {limit} bytes)", "send less", reason="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def aiohttp_handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES_KEY]
        call = Call(request=request, services=services)
        if route.auth == "user":
            call._user = await services.accounts.authenticate(bearer_token(request))
        elif route.auth == "hub":
            call._hub = await services.hubs.authenticate(bearer_token(request))
        elif route.auth == "hub_claim":
            call._claim = await services.hubs.claim(bearer_token(request))
        for name in route.path_params:
            value = request.match_info[name]
            if not _UUID.match(value):  # an id we could never have issued: same answer as an unknown one
                raise errors.NotFound(f"no such {name.removesuffix('_id')}", reason="not_found")
            call.params[name] = value
        if route.query is not None:
            query = request.query
            if len(set(query.keys())) != len(query):
                raise errors.InvalidInput("a query parameter was given twice", reason="invalid_input")
            call.query = parse_model(route.query, dict(query), "query")
        elif request.query:
            raise errors.InvalidInput("this route takes no query parameters", reason="invalid_input")
        if route.body is not None:
            limit = route.max_body_bytes or services.ctx.config.server.max_body_bytes
            if request.content_length is not None and request.content_length > limit:
                # Refused on the declared length, before reading a byte of it.
                raise errors.TooLarge(f"request body too large (limit {limit} bytes)",
                                      "send less; clips go to the upload URL, not to the API", reason="body_too_large")
            if route.max_body_bytes is None:
                raw = await request.read()  # a body without Content-Length is cut at the same limit by aiohttp (413)
            else:
                raw = await _read_limited(request, limit)  # past the app-wide limit aiohttp's read() enforces
            call.body = parse_model(route.body, raw if raw.strip() else b"{}", "body")
        try:
            result = await route.handler(call)
        except StaleHubClaim:
            # The token no longer names the hub as this process knew it: look it up (401 when it is revoked) and
            # run the call once more. The handler raised before writing anything (its first statement checks).
            call._claim = await services.hubs.claim(bearer_token(request), fresh=True)
            try:
                result = await route.handler(call)
            except StaleHubClaim:  # revoked between that lookup and the statement
                raise hub_token_refused() from None
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        return web.Response(body=result.model_dump_json().encode(), status=route.status,
                            content_type="application/json")

    handle.__name__ = route.operation_id
    return handle


def add_routes(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, aiohttp_handler(route))
