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


@dataclass(frozen=True)
class HubClaim:
    """A hub token and the hub it belonged to when this process last looked it up, for the two calls every
    upload makes (initiate, finalize): they check the token in their own first statement (``services.hubs.claim_holds``)
    instead of a lookup of its own before it. ``fresh``: looked up in the database for this request."""

    token_hash: str
    caller: HubCaller
    fresh: bool


class StaleHubClaim(Exception):
    """The claim's token no longer names that hub as it was (unlinked, the account disabled, the plan changed):
    the web edge looks the token up again (401 when it is revoked) and runs the call once more."""
