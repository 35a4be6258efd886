"""The web console under ``/ui``: a service's health, a bad prediction followed to its proof,
the compliance officer's queries, the audit log, all server-rendered, every page with a JSON twin.

``instrument(app, console=True)`` (or :func:`include_console`) mounts it; docs/console.md
describes the pages, the login (the compliance API's keys and roles) and what each role sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infertrail.console.app import Console, PageContext, PageError
from infertrail.console.sessions import SessionCodec

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from infertrail.runtime.assembly import Runtime

__all__ = ["SESSION_KEY_PURPOSE", "Console", "PageContext", "PageError", "include_console"]

#: The keyring purpose of the session-signing key.
SESSION_KEY_PURPOSE = "console-session"


def include_console(app: Starlette, runtime: Runtime, *, prefix: str = "/ui") -> Console:
    """Mount the console of ``runtime`` on ``app`` under ``prefix``; returns it.

    Needs the audit trail (its keyring signs the sessions; its users log in) and the
    compliance access (users and queries): ``audit_enabled``, as ``compliance_api`` does.
    """
    from infertrail.console import pages

    if runtime.audit is None or runtime.compliance is None:
        raise RuntimeError("the console needs the audit trail and its users (audit_enabled)")
    _, key = runtime.audit.keyring.active(SESSION_KEY_PURPOSE)
    codec = SessionCodec(key, lifetime_s=runtime.settings.console_session_minutes * 60)
    console = Console(runtime, runtime.compliance.users, codec, prefix=prefix)
    pages.register_all(console)
    console.mount(app)
    return console
