"""Who may do what to personal data, and what a stated reason must look like.

The HTTP API authenticates the actor and passes its role; these checks run again in the
service layer so that no caller (API, CLI, a library user) can skip them.
"""

from __future__ import annotations

from infertrail.audit.record import Actor
from infertrail.privacy.errors import AccessRefusedError

__all__ = [
    "BREAK_GLASS_ROLES",
    "ERASURE_ROLES",
    "MAX_TEXT_CHARS",
    "MIN_JUSTIFICATION_CHARS",
    "RE_ENROLMENT_ROLES",
    "require_role",
    "require_text",
]

BREAK_GLASS_ROLES = frozenset({"admin"})
ERASURE_ROLES = frozenset({"compliance", "admin"})
RE_ENROLMENT_ROLES = frozenset({"compliance", "admin"})
MIN_JUSTIFICATION_CHARS = 10  # break-glass justification and re-enrolment reason
MAX_TEXT_CHARS = 1000  # stated reasons go into the permanent log: short, no personal data


def require_role(actor: Actor, allowed: frozenset[str], action: str) -> None:
    """AccessRefusedError unless ``actor`` acts under one of the ``allowed`` roles."""
    if not isinstance(actor, Actor):
        raise TypeError(f"actor must be an infertrail Actor, got {type(actor).__name__}")
    if actor.role not in allowed:
        raise AccessRefusedError(
            f"{action} needs role {' or '.join(sorted(allowed))}; actor {actor.id!r} has role "
            f"{actor.role!r}"
        )


def require_text(name: str, value: object, min_chars: int) -> str:
    """``value`` stripped, if it is a string of ``min_chars`` to MAX_TEXT_CHARS characters."""
    if not isinstance(value, str):
        raise AccessRefusedError(f"{name} must be text, got {type(value).__name__}")
    text = value.strip()
    if not min_chars <= len(text) <= MAX_TEXT_CHARS:
        raise AccessRefusedError(
            f"{name} must be {min_chars} to {MAX_TEXT_CHARS} characters, got {len(text)}"
        )
    return text
