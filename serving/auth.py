"""Bearer tokens for the RAG service, from `MEDLAKE_API_TOKENS`.

The variable lists `principal:token[:scope+scope]` entries separated by commas, e.g.
`dr-lee:9f2c...,qa-bot:77ab...:search`. Scopes are `ask`, `search` and `feedback`; an
entry without scopes gets all three. No configured tokens means nobody gets data.
The principal, never the token, is what the audit tables record as who asked.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

SCOPES = frozenset({"ask", "search", "feedback"})


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]


class TokenConfigError(ValueError):
    pass


def parse_tokens(spec: str) -> dict[str, Principal]:
    """token -> principal, from the `MEDLAKE_API_TOKENS` syntax."""
    tokens: dict[str, Principal] = {}
    for n, entry in enumerate(e.strip() for e in spec.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise TokenConfigError(
                f"MEDLAKE_API_TOKENS entry {n + 1} is not `principal:token[:scope+scope]`.")
        scopes = frozenset(parts[2].split("+")) if len(parts) == 3 else SCOPES
        if not scopes <= SCOPES:
            raise TokenConfigError(f"MEDLAKE_API_TOKENS entry {n + 1} names unknown scope(s) "
                                   f"{', '.join(sorted(scopes - SCOPES))}; use {', '.join(sorted(SCOPES))}.")
        if len(parts[1]) < 16:
            raise TokenConfigError(f"MEDLAKE_API_TOKENS entry {n + 1} ({parts[0]}): a token "
                                   "needs at least 16 characters.")
        tokens[parts[1]] = Principal(parts[0], scopes)
    return tokens


def authenticate(tokens: dict[str, Principal], presented: str | None) -> Principal | None:
    if not presented:
        return None
    # Compare against every token in constant time, so timing does not leak a prefix.
    found = None
    for token, principal in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = principal
    return found
