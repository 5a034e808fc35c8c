"""The cloud API's web edge: routes, the registry, middleware (HTTP status codes live here only)."""
