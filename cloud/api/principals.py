"""Who is calling: a user (account token) or a hub (hub token). Every service call that reads or writes tenant
data takes one of these, and every query filters by its account (or hub) id."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    account_id: str
    email: str
    plan: str
    token_id: str


@dataclass(frozen=True)
class HubCaller:
    hub_id: str
    account_id: str
    name: str
    plan: str
