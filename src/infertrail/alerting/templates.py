"""Annotation and dedup-key templates: ``str.format`` with a closed set of placeholders.

Templates come from a rules file, so they are checked when the file is loaded (unknown
placeholder, bad format spec) and attribute access (``{rule.__class__}``) is refused: a template
can only read the values listed in ``PLACEHOLDERS``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

# Placeholder -> what it holds. ``labels[NAME]`` reads one of the rule's labels.
PLACEHOLDERS: Mapping[str, str] = {
    "rule": "rule name",
    "model": "model the evaluation was for",
    "signal": "signal key, e.g. drift.share_drifted",
    "value": "signal value at this evaluation (float)",
    "threshold": "rule threshold (float)",
    "comparison": "comparison operator, e.g. >",
    "severity": "critical, error, warning or info",
    "for_windows": "consecutive breaching evaluations needed to fire",
    "resolve_after": "consecutive clean evaluations needed to resolve",
    "status": "firing or resolved",
    "labels": "the rule's labels; use {labels[team]}",
}
# The dedup key names the alert across trigger and resolve, so it must not depend on
# anything that changes between the two evaluations.
VOLATILE = frozenset({"value", "status"})

_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """A template that cannot be rendered; the message names the bad placeholder."""


def placeholders(template: str) -> list[str]:
    """The root names a template reads (``labels[team]`` -> ``labels``), in order of use."""
    roots: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:  # unbalanced braces
        raise TemplateError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise TemplateError("positional placeholders ({} or {0}) are not allowed; use names")
        root, _, rest = field.partition("[")
        if "." in field or (rest and root != "labels"):
            raise TemplateError(
                f"placeholder {{{field}}}: only {{labels[NAME]}} may index, nothing may use '.'"
            )
        if root not in PLACEHOLDERS:
            allowed = ", ".join(sorted(PLACEHOLDERS))
            raise TemplateError(f"unknown placeholder {{{root}}}; allowed: {allowed}")
        if spec and "{" in spec:
            raise TemplateError(f"placeholder {{{field}}}: nested placeholders are not allowed")
        roots.append(root)
    return roots


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render ``template`` with ``context``; errors become ``TemplateError`` naming the cause."""
    placeholders(template)
    try:
        return template.format_map(context)
    except KeyError as exc:
        raise TemplateError(f"no value for {exc.args[0]!r} in this template") from None
    except (ValueError, TypeError, IndexError) as exc:
        raise TemplateError(str(exc)) from None


def sample_context(labels: Mapping[str, str]) -> dict[str, Any]:
    """Values of the right types, to try a template at load time."""
    return {
        "rule": "rule",
        "model": "model",
        "signal": "signal",
        "value": 0.5,
        "threshold": 0.25,
        "comparison": ">",
        "severity": "warning",
        "for_windows": 1,
        "resolve_after": 1,
        "status": "firing",
        "labels": dict(labels),
    }
