"""Secrets: random tokens (stored as SHA-256 only), link codes people type, and argon2id password hashes.

Tokens are 256-bit random values, so a plain SHA-256 is the right at-rest form (no salt or slow KDF is needed
for a value nobody can guess); passwords are low-entropy and get argon2id through argon2-cffi.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Prefixes make a leaked token recognisable (secret scanners, logs) and say which kind it is.
USER_TOKEN_PREFIX = "pwu_"
HUB_TOKEN_PREFIX = "pwh_"
POLL_TOKEN_PREFIX = "pwp_"

# Link codes are typed by a person from the hub's screen: no 0/O or 1/I/L confusion; 8 characters from 31 is
# ~40 bits, plenty for a code that lives 10 minutes and is only accepted from a logged-in account.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8


def new_id() -> str:
    return str(uuid.uuid4())


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_link_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_link_code(code: str) -> str:
    """What the user typed, forgiving case, spaces and dashes ("abcd-efgh" == "ABCDEFGH")."""
    return "".join(ch for ch in code.upper() if ch not in " -")


def format_link_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


class Passwords:
    """argon2id hashing with configurable cost; a check against a dummy hash keeps unknown e-mails as slow as
    known ones (no account enumeration by timing)."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
