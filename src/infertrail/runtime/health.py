"""Readiness: can this service take decisions now? One verdict per component, and why not.

A decision is given only once its audit record is durable, so a service is ready only while
what that needs can take writes: the audit log, the lake its records are sealed into, and the
privacy databases (a new subject's pseudonym is written before its record). The functions here
turn what the components report (a failure, free space, permissions) into
:class:`ComponentHealth` values; :meth:`infertrail.runtime.Runtime.health` gathers them.

Reasons are shown to whoever calls ``/readyz``: they name the component and the kind of fault
(``ENOSPC``, "not writable"), never a file-system path of the server.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ComponentHealth",
    "Health",
    "component",
    "error_reason",
    "size_text",
    "storage_problems",
]


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One component's verdict: ``ok``, else ``reason`` (names no file-system path).

    ``required=False``: decisions do not depend on it (the checkpoints' timestamps); its
    failure is shown but leaves the service ready.
    """

    name: str
    ok: bool
    reason: str = ""
    required: bool = True


@dataclass(frozen=True, slots=True)
class Health:
    """Every checked component's verdict; ready when all are ok."""

    components: tuple[ComponentHealth, ...]

    @property
    def ready(self) -> bool:
        """Whether every required component is ok (a service checking nothing is ready)."""
        return all(c.ok for c in self.components if c.required)

    def problems(self) -> str:
        """The failing required components and why, in one line (empty when ready)."""
        return "; ".join(
            f"{c.name}: {c.reason}" for c in self.components if c.required and not c.ok
        )

    def to_dict(self) -> dict[str, str]:
        """Component name -> "ok" or its reason."""
        return {c.name: "ok" if c.ok else c.reason for c in self.components}


def error_reason(exc: BaseException) -> str:
    """A one-line description of an error without its message (which may hold paths).

    An OS error is named by its errno, e.g. ``ENOSPC (No space left on device)``; anything
    else by its type (the log line written when it happened has the rest).
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, f"errno {exc.errno}")
        return f"{name} ({os.strerror(exc.errno)})"
    return type(exc).__name__


def size_text(n: int) -> str:
    """Bytes in binary units, e.g. ``512 B``, ``3.0 MiB``."""
    value, unit = float(n), "B"
    for larger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def storage_problems(
    places: Sequence[tuple[str, Path]],
    min_free_bytes: int,
    *,
    free_bytes: Callable[[Path], int] | None = None,
    writable: Callable[[Path], bool] | None = None,
) -> list[str]:
    """What stops writes to ``places`` (``(label, path)``): permissions, too little space.

    A place that does not exist yet is judged by its nearest existing parent (it is created on
    first use). Space is checked once, at the place with the least of it, when
    ``min_free_bytes`` > 0. ``free_bytes`` and ``writable`` stand in for the real checks (space
    an unprivileged user may use; ``os.access``) in tests.
    """
    free_of = free_bytes or _free_bytes
    can_write = writable or _writable
    problems = []
    existing = [(label, _nearest_existing(path)) for label, path in places]
    for label, path in existing:
        if not can_write(path):
            problems.append(f"{label} is not writable")
    if min_free_bytes > 0 and existing:
        try:
            free = min(free_of(path) for _, path in existing)
        except OSError as exc:
            problems.append(f"free space unknown: {error_reason(exc)}")
        else:
            if free < min_free_bytes:
                problems.append(
                    f"{size_text(free)} free on its file system, under the "
                    f"{size_text(min_free_bytes)} required"
                )
    return problems


def component(name: str, problems: Iterable[str]) -> ComponentHealth:
    """A component's verdict from its problems (none: ok)."""
    found = list(problems)
    return ComponentHealth(name, not found, "; ".join(found))


def _nearest_existing(path: Path) -> Path:
    # os.path, not Path: False rather than PermissionError under a directory we may not search.
    while not os.path.exists(path) and path.parent != path:  # noqa: PTH110
        path = path.parent
    return path


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _writable(path: Path) -> bool:
    # A directory must also be searchable to create files in it (os.path: never raises).
    mode = os.W_OK | os.X_OK if os.path.isdir(path) else os.W_OK  # noqa: PTH112
    return os.access(path, mode)
