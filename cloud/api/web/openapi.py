"""The OpenAPI 3.1 document, generated from the route registry and the pydantic models (never hand-written).

Request bodies use each model's validation schema, responses its serialisation schema, query parameters one
entry per field of the route's query model; every documented error shares the ErrorBody schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from cloud.api.models import ErrorBody
from cloud.api.web.registry import Route

REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Invalid input", 401: "Missing or invalid token",
    402: "Not enough credits", 404: "Not found (or another tenant's)", 409: "Conflict with the current state",
    410: "Gone", 413: "Too large", 422: "Refused content", 429: "Too many requests", 503: "Storage unavailable",
}
# Every route can answer these (malformed request, body over the limit).
_COMMON_ERRORS = (400, 413)


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Optional query parameters are simply absent; 'null' cannot be sent in a query string."""
    any_of = schema.get("anyOf")
    if any_of:
        rest = [s for s in any_of if s.get("type") != "null"]
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k != "anyOf"}
            merged.update(rest[0])
            return merged
        schema = {**schema, "anyOf": rest}
    return schema


def build_openapi(routes: list[Route], title: str, version: str) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for r in routes:
        if r.body is not None:
            models.append((r.body, "validation"))
        if r.response is not None:
            models.append((r.response, "serialization"))
    refs, defs = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = defs.get("$defs", {})

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"operationId": r.operation_id, "summary": r.summary, "tags": [r.tag]}
        if r.description:
            op["description"] = r.description
        params: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
            for p in r.path_params
        ]
        if r.query is not None:
            qschema = r.query.model_json_schema(ref_template=REF, mode="validation")
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                         "schema": _strip_null(prop)}
                if "description" in prop:
                    param["description"] = prop["description"]
                params.append(param)
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": refs[(r.body, "validation")]}}}
        if r.auth != "none":
            op["security"] = [{"userToken" if r.auth == "user" else "hubToken": []}]
        responses: dict[str, Any] = {}
        if r.response is not None:
            responses[str(r.status)] = {
                "description": _STATUS_TEXT.get(r.status, "OK"),
                "content": {"application/json": {"schema": refs[(r.response, "serialization")]}},
            }
        elif r.status == 204:
            responses["204"] = {"description": _STATUS_TEXT[204]}
        else:
            responses[str(r.status)] = {"description": "OK",
                                        "content": {"application/json": {"schema": {"type": "object"}}}}
        codes = set(r.errors) | set(_COMMON_ERRORS) | ({401} if r.auth != "none" else set())
        if r.path_params:
            codes.add(404)
        for code in sorted(codes):
            responses[str(code)] = {
                "description": _STATUS_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": refs[(ErrorBody, "serialization")]}},
            }
        op["responses"] = responses
        paths.setdefault(r.path, {})[r.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "ping-watch cloud API: accounts, hubs, event uploads, timeline, credits."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "userToken": {"type": "http", "scheme": "bearer", "description": "From POST /api/v1/auth/login."},
                "hubToken": {"type": "http", "scheme": "bearer", "description": "From the hub link flow."},
            },
        },
    }
