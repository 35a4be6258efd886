"""Alert rules and receivers, loaded from TOML or YAML and validated when loaded.

A rule compares one signal (a key such as ``drift.share_drifted`` in the values handed to
``AlertEngine.evaluate``) with a threshold; it fires after ``for_windows`` consecutive breaching
evaluations and resolves after ``resolve_after`` consecutive clean ones. Every mistake in a
rules file is reported with the rule (or receiver) and field it is in, e.g.
``rule 'digits-drift': for_windows must be >= 1, got 0``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from infertrail.alerting.templates import VOLATILE, TemplateError, placeholders, render
from infertrail.alerting.templates import sample_context as _sample_context
from infertrail.validation import describe_error

Severity = Literal["critical", "error", "warning", "info"]
Comparison = Literal[">", ">=", "<", "<="]
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "info")

# Labels the engine sets itself on every alert, from the rule's own fields.
RESERVED_LABELS = frozenset({"alertname", "model", "severity", "signal"})
DEFAULT_SUMMARY = (
    "{rule} {status}: {signal} = {value:.4g} on model {model}"
    " (fires when {comparison} {threshold:g})"
)
DEFAULT_DEDUP_KEY = "infertrail/{rule}/{model}"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RuleError(ValueError):
    """A rules file that does not validate; ``problems`` lists every mistake found."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(f"{source}: {self.problems[0]}")
        else:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            super().__init__(f"{source}: {len(self.problems)} problems:\n{listed}")


class ReceiverSecretError(ValueError):
    """A receiver's secret names an environment variable that is not set."""


def _http_url(v: str | None) -> str | None:
    if v is not None and not v.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {v!r}")
    return v


class _Receiver(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", description="Filled in from the table key in the rules file.")


class _SecretUrlReceiver(_Receiver):
    """A receiver whose URL is itself the secret (Slack and most webhooks embed a token)."""

    url: SecretStr | None = None
    url_env: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_url(self) -> _SecretUrlReceiver:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("exactly one of url and url_env must be set")
        if self.url is not None:
            _http_url(self.url.get_secret_value())
        return self

    def resolved_url(self, environ: Mapping[str, str] | None = None) -> str:
        """The URL, read from the environment when ``url_env`` is used."""
        url = _secret(self.name, "url", self.url, self.url_env, environ)
        if not url.startswith(("http://", "https://")):
            raise ReceiverSecretError(
                f"receiver {self.name!r}: {self.url_env} must hold an http(s) URL"
            )
        return url


class PagerDutyReceiver(_Receiver):
    """PagerDuty Events API v2; the routing key may come from an environment variable."""

    type: Literal["pagerduty"]
    url: str = PAGERDUTY_EVENTS_URL
    routing_key: SecretStr | None = None
    routing_key_env: str | None = Field(None, min_length=1)
    source: str | None = Field(None, min_length=1, description="Default: this host's name.")
    group: str | None = Field(None, min_length=1, description="Default: the 'team' label.")

    _check_url = field_validator("url")(_http_url)

    @model_validator(mode="after")
    def _one_key(self) -> PagerDutyReceiver:
        if (self.routing_key is None) == (self.routing_key_env is None):
            raise ValueError("exactly one of routing_key and routing_key_env must be set")
        return self

    def resolved_routing_key(self, environ: Mapping[str, str] | None = None) -> str:
        """The routing key, read from the environment when ``routing_key_env`` is used."""
        return _secret(self.name, "routing_key", self.routing_key, self.routing_key_env, environ)


class AlertmanagerReceiver(_Receiver):
    """A Prometheus Alertmanager; ``url`` is its base URL (``/api/v2/alerts`` is appended)."""

    type: Literal["alertmanager"]
    url: str
    generator_url: str | None = None
    # Alertmanager resolves an alert on its own at endsAt; the engine re-sends firing alerts
    # at every evaluation, so this must exceed the evaluation interval (as in Prometheus).
    expires_after_s: float = Field(3600.0, gt=0, allow_inf_nan=False)

    _check_url = field_validator("url", "generator_url")(_http_url)


class SlackReceiver(_SecretUrlReceiver):
    """A Slack incoming webhook."""

    type: Literal["slack"]


class WebhookReceiver(_SecretUrlReceiver):
    """Any HTTP endpoint that takes the transition as JSON."""

    type: Literal["webhook"]


Receiver = Annotated[
    PagerDutyReceiver | AlertmanagerReceiver | SlackReceiver | WebhookReceiver,
    Discriminator("type"),
]
_RECEIVER_ADAPTER: TypeAdapter[Receiver] = TypeAdapter(Receiver)
RECEIVER_TYPES = ("pagerduty", "alertmanager", "slack", "webhook")


def _secret(
    receiver: str,
    field: str,
    value: SecretStr | None,
    env_var: str | None,
    environ: Mapping[str, str] | None,
) -> str:
    if value is not None:
        return value.get_secret_value()
    env = os.environ if environ is None else environ
    found = env.get(env_var or "")
    if not found:
        raise ReceiverSecretError(
            f"receiver {receiver!r}: {field}_env names {env_var}, which is not set or empty"
        )
    return found


class AlertRule(BaseModel):
    """One alert rule: signal, comparison, threshold, persistence, severity, routing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    signal: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
    model: str = Field("*", min_length=1, description='A model name, or "*" for every model.')
    comparison: Comparison
    threshold: float = Field(strict=True, allow_inf_nan=False)
    for_windows: int = Field(1, ge=1, le=100_000, strict=True)
    resolve_after: int = Field(1, ge=1, le=100_000, strict=True)
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    dedup_key: str = Field(DEFAULT_DEDUP_KEY, min_length=1)
    receivers: tuple[str, ...] = ()
    promql: str | None = Field(
        None, min_length=1, description="PromQL for the signal's value, for export only."
    )

    @field_validator("labels", "annotations")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(
                    f"name {key!r} must match {_LABEL_NAME.pattern} and not start with __"
                )
        return v

    @field_validator("labels")
    @classmethod
    def _not_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        clash = sorted(RESERVED_LABELS & v.keys())
        if clash:
            raise ValueError(f"label {clash[0]!r} is set by the engine from the rule itself")
        return v

    @model_validator(mode="after")
    def _templates_render(self) -> AlertRule:
        ctx = _sample_context(self.labels)
        for field, template in [("dedup_key", self.dedup_key), *self.template_items()]:
            try:
                used = placeholders(template)
                render(template, ctx)
            except TemplateError as exc:
                raise ValueError(f"{field}: {exc}") from None
            if field == "dedup_key" and VOLATILE & set(used):
                bad = sorted(VOLATILE & set(used))[0]
                raise ValueError(
                    f"dedup_key: {{{bad}}} changes between trigger and resolve; "
                    "a dedup key must name the alert, not its current value"
                )
        return self

    def template_items(self) -> list[tuple[str, str]]:
        """(field, template) for every annotation, with the default summary filled in."""
        items = {"summary": DEFAULT_SUMMARY, **self.annotations}
        return [(f"annotations.{k}", v) for k, v in items.items()]

    def applies_to(self, model: str) -> bool:
        """True when this rule evaluates values reported for ``model``."""
        return self.model in ("*", model)

    def breached(self, value: float) -> bool:
        """True when ``value`` is on the alerting side of the threshold."""
        t = self.threshold
        match self.comparison:
            case ">":
                return value > t
            case ">=":
                return value >= t
            case "<":
                return value < t
            case "<=":
                return value <= t


class RuleSet(BaseModel):
    """The rules and receivers of one rules file."""

    model_config = ConfigDict(frozen=True)

    rules: tuple[AlertRule, ...]
    receivers: Mapping[str, Receiver] = Field(default_factory=dict)

    def rule(self, name: str) -> AlertRule:
        """The rule called ``name``; KeyError names the known ones otherwise."""
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(f"no rule {name!r}; rules: {', '.join(r.name for r in self.rules)}")


def rule_list(rules: RuleSet | Iterable[AlertRule]) -> tuple[AlertRule, ...]:
    """The rules of a RuleSet, or the given rules themselves, as a tuple."""
    return rules.rules if isinstance(rules, RuleSet) else tuple(rules)


# -- loading ------------------------------------------------------------------------------------
def load_rules(path: str | os.PathLike[str]) -> RuleSet:
    """Read and validate a rules file (``.toml``, ``.yaml`` or ``.yml``); RuleError on mistakes."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise RuleError(str(p), [f"unknown file type {suffix!r}; use .toml, .yaml or .yml"])
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(str(p), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data: Any = tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise RuleError(str(p), [f"not valid {suffix[1:].upper()}: {exc}"]) from None
    return parse_rules(data, source=str(p))


def parse_rules(data: Any, *, source: str = "<rules>") -> RuleSet:
    """Validate already-parsed rules data (a mapping with ``rules`` and ``receivers``)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RuleError(source, [f"top level must be a table/mapping, got {type(data).__name__}"])
    problems = [f"unknown top-level key {k!r}" for k in data if k not in ("rules", "receivers")]
    receivers = _parse_receivers(data.get("receivers", {}), problems)
    rules = _parse_rules_list(data.get("rules", []), problems)
    for rule in rules:
        for name in rule.receivers:
            if name not in receivers:
                known = ", ".join(sorted(receivers)) or "none defined"
                problems.append(
                    f"rule {rule.name!r}: receivers: unknown receiver {name!r} (defined: {known})"
                )
    if problems:
        raise RuleError(source, problems)
    return RuleSet(rules=tuple(rules), receivers=receivers)


def _parse_receivers(raw: Any, problems: list[str]) -> dict[str, Receiver]:
    if not isinstance(raw, Mapping):
        problems.append(f"receivers must be a table of named receivers, got {type(raw).__name__}")
        return {}
    out: dict[str, Receiver] = {}
    for name, body in raw.items():
        where = f"receiver {name!r}"
        if not isinstance(body, Mapping):
            problems.append(f"{where}: must be a table, got {type(body).__name__}")
            continue
        if "name" in body:
            problems.append(f"{where}: name is not a field (the table key is the name)")
            continue
        try:
            out[name] = _RECEIVER_ADAPTER.validate_python({**body, "name": name})
        except ValidationError as exc:
            tag = body.get("type")
            problems.extend(f"{where}: {_describe(e, strip=tag)}" for e in exc.errors())
    return out


def _parse_rules_list(raw: Any, problems: list[str]) -> list[AlertRule]:
    if not isinstance(raw, list):
        problems.append(f"rules must be a list ([[rules]] in TOML), got {type(raw).__name__}")
        return []
    out: list[AlertRule] = []
    seen: set[str] = set()
    for i, body in enumerate(raw):
        if not isinstance(body, Mapping):
            problems.append(f"rule #{i + 1}: must be a table, got {type(body).__name__}")
            continue
        name = body.get("name")
        where = f"rule {name!r}" if isinstance(name, str) and name else f"rule #{i + 1}"
        if isinstance(name, str) and name in seen:
            problems.append(f"{where}: name is used by more than one rule")
        seen.add(str(name))
        try:
            out.append(AlertRule.model_validate(body))
        except ValidationError as exc:
            problems.extend(f"{where}: {_describe(e)}" for e in exc.errors())
    return out


def _describe(err: ErrorDetails, strip: Any = None) -> str:
    """One pydantic error as 'field must ..., got X', in the words of the rules file."""
    loc = list(err["loc"])
    if strip is not None and loc and loc[0] == strip:  # discriminated unions prefix the tag
        loc = loc[1:]
    field = ".".join(str(p) for p in loc)
    return describe_error(err, field, tag_field="type", tag_values=RECEIVER_TYPES)
