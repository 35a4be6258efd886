"""The console's pages, one module each; :func:`register_all` adds them in navigation order."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infertrail.console.app import Console

#: Page modules in navigation order; each has ``register(console)``.
PAGE_MODULES = ("overview", "explorer", "drift", "slos", "compliance", "auditlog")


def register_all(console: Console) -> None:
    """Register every page module, in navigation order."""
    for name in PAGE_MODULES:
        import_module(f"infertrail.console.pages.{name}").register(console)
