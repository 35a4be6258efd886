"""SLO definitions: what "good" means for an inference, the objective, and the alerting labels.

A definitions file is either the compact native form (TOML or YAML, shaped after Sloth's
``prometheus/v1`` spec: a ``service``, common ``labels`` and a list of ``slos``) or OpenSLO v1
YAML documents (:mod:`infertrail.slo.openslo` maps them onto the native form). Every SLI counts
good and total events of the telemetry infertrail already produces, so the in-process evaluator
and the exported Prometheus rules judge the same events:

* ``latency``: inferences whose duration is at most ``threshold_seconds``, which must be a bucket
  boundary of the ``infertrail.inference.duration`` histogram (else Prometheus could not count
  them exactly);
* ``availability``: non-error responses (rejections included as errors, except the
  ``exclude_error_types`` a team decides are the caller's fault);
* ``confidence``: predictions whose confidence is above ``threshold`` (a bucket boundary of
  ``infertrail.prediction.confidence``);
* ``ood``: sampled inputs judged in distribution by the drift monitor of one model;
* ``ttft`` (LLM generations): successful generations whose time to first token is at most
  ``threshold_seconds``, a bucket boundary of ``gen_ai.server.time_to_first_token``;
* ``tokens_per_second`` (LLM generations): successful generations whose time per output token
  is at most ``1 / target``, which must be a bucket boundary of
  ``gen_ai.server.time_per_output_token`` (so ``target`` is one of a fixed list, 10 or 20 ...).

Mistakes are reported with the SLO and field, e.g.
``slo 'sentiment-latency': sli.threshold_seconds must be a bucket boundary ...``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from infertrail.alerting.rules import RESERVED_LABELS, Severity
from infertrail.telemetry import conventions as c
from infertrail.validation import describe_error

#: Longest burn-rate window (the workbook's ticket 3d/6h pair): an SLO window must cover it.
MIN_WINDOW_S = 3 * 86400
MAX_WINDOW_S = 90 * 86400
DEFAULT_WINDOW = "28d"
_DURATION = re.compile(r"^([1-9][0-9]*)([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NAME = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Sloth's labels plus ours: the export and the engine set them from the SLO itself.
SLO_LABELS = frozenset({"sloth_id", "sloth_service", "sloth_slo", "sloth_window", "sloth_severity"})


class SLOError(ValueError):
    """A definitions file that does not validate; ``problems`` lists every mistake found."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(f"{source}: {self.problems[0]}")
        else:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            super().__init__(f"{source}: {len(self.problems)} problems:\n{listed}")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``5m``, ``6h``, ``28d`` or ``4w`` (ValueError otherwise)."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"must be a duration like 30m, 6h, 28d or 4w, got {text!r}")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def format_duration(seconds: int) -> str:
    """A Prometheus duration in the largest unit (d, h, m, s) that divides ``seconds``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _bucket_boundary(value: float, buckets: Sequence[float], instrument: str) -> float:
    if value not in buckets:
        allowed = ", ".join(f"{b:g}" for b in buckets)
        raise ValueError(
            f"must be a bucket boundary of the {instrument} histogram ({allowed}), "
            f"got {value!r}: only a boundary can be counted exactly from /metrics"
        )
    return value


class _SLI(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatencySLI(_SLI):
    """Good: an inference whose duration is at most ``threshold_seconds``."""

    kind: Literal["latency"]
    threshold_seconds: float = Field(strict=False, allow_inf_nan=False)

    @field_validator("threshold_seconds")
    @classmethod
    def _boundary(cls, v: float) -> float:
        return _bucket_boundary(v, c.DURATION_BUCKETS_S, c.METRIC_DURATION)


class AvailabilitySLI(_SLI):
    """Good: a response that is not an error; ``exclude_error_types`` are not counted at all."""

    kind: Literal["availability"]
    exclude_error_types: tuple[str, ...] = ()

    @field_validator("exclude_error_types")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            # They become a PromQL regex alternative; keep them literal.
            if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
                raise ValueError(f"error type {name!r} must be letters, digits, '_.:-'")
        return v


class ConfidenceSLI(_SLI):
    """Good: a successful prediction whose confidence is above ``threshold`` (strictly)."""

    kind: Literal["confidence"]
    threshold: float = Field(allow_inf_nan=False)

    @field_validator("threshold")
    @classmethod
    def _boundary(cls, v: float) -> float:
        return _bucket_boundary(v, c.CONFIDENCE_BUCKETS, c.METRIC_CONFIDENCE)


class OodSLI(_SLI):
    """Good: a sampled input the drift monitor judged in distribution (docs/drift.md)."""

    kind: Literal["ood"]


class TimeToFirstTokenSLI(_SLI):
    """Good: a successful generation whose first token came within ``threshold_seconds``."""

    kind: Literal["ttft"]
    threshold_seconds: float = Field(strict=False, allow_inf_nan=False)

    @field_validator("threshold_seconds")
    @classmethod
    def _boundary(cls, v: float) -> float:
        return _bucket_boundary(v, c.GENAI_TTFT_BUCKETS_S, c.METRIC_GENAI_TIME_TO_FIRST_TOKEN)


#: The output speeds a ``tokens_per_second`` SLI can target: 1 / each bucket boundary of the
#: time-per-output-token histogram (100, 40, 20, 13.3333, 10, ... tokens per second).
TOKENS_PER_SECOND_TARGETS = tuple(1 / b for b in c.GENAI_TPOT_BUCKETS_S)
# Relative tolerance of a target: 13.3333 names the 0.075 s boundary (1 / 0.075 = 13.333...).
_TPS_TOLERANCE = 1e-4


class TokensPerSecondSLI(_SLI):
    """Good: a successful generation that streamed at ``target`` tokens per second or faster,
    i.e. whose mean time per output token (after the first) is at most ``1 / target``."""

    kind: Literal["tokens_per_second"]
    target: float = Field(gt=0, strict=False, allow_inf_nan=False)

    @field_validator("target")
    @classmethod
    def _boundary(cls, v: float) -> float:
        if _tpot_boundary(v) is None:
            allowed = ", ".join(f"{t:.6g}" for t in TOKENS_PER_SECOND_TARGETS)
            raise ValueError(
                f"must be 1 / a bucket boundary of the {c.METRIC_GENAI_TIME_PER_OUTPUT_TOKEN} "
                f"histogram ({allowed} tokens/s), got {v!r}: only a boundary can be counted "
                "exactly from /metrics"
            )
        return v

    @property
    def seconds_per_token(self) -> float:
        """The time-per-output-token boundary a good generation stays at or below."""
        found = _tpot_boundary(self.target)
        assert found is not None  # validated
        return found


def _tpot_boundary(target: float) -> float | None:
    for b in c.GENAI_TPOT_BUCKETS_S:
        if abs(1 / target - b) <= _TPS_TOLERANCE * b:
            return b
    return None


SLISpec = Annotated[
    LatencySLI
    | AvailabilitySLI
    | ConfidenceSLI
    | OodSLI
    | TimeToFirstTokenSLI
    | TokensPerSecondSLI,
    Discriminator("kind"),
]
SLI_KINDS = ("latency", "availability", "confidence", "ood", "ttft", "tokens_per_second")


def _check_labels(v: dict[str, str]) -> dict[str, str]:
    for key in v:
        if not _LABEL_NAME.match(key) or key.startswith("__"):
            raise ValueError(
                f"has label {key!r}, which must match {_LABEL_NAME.pattern} and not start with __"
            )
    clash = sorted((RESERVED_LABELS | SLO_LABELS) & v.keys())
    if clash:
        raise ValueError(f"has label {clash[0]!r}, which is set from the SLO itself")
    return v


class AlertSpec(BaseModel):
    """One of the two burn-rate alerts (page or ticket) of an SLO."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    disable: bool = False
    severity: Severity | None = Field(None, description="Default: critical (page), warning.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    receivers: tuple[str, ...] = ()

    _labels = field_validator("labels")(_check_labels)


class SLOAlerting(BaseModel):
    """Alert name, shared labels and annotations, and the page and ticket alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    page_alert: AlertSpec = AlertSpec()
    ticket_alert: AlertSpec = AlertSpec()

    _labels = field_validator("labels")(_check_labels)


class SLO(BaseModel):
    """One service level objective over one SLI, as validated from a definitions file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    service: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    description: str = ""
    model: str = Field("*", min_length=1, description='A model name, or "*" for every model.')
    objective: float = Field(
        gt=0, lt=100, allow_inf_nan=False, description="Percent of good events, e.g. 99.9."
    )
    window: str = DEFAULT_WINDOW
    sli: SLISpec
    labels: dict[str, str] = Field(default_factory=dict)
    alerting: SLOAlerting = SLOAlerting()

    _labels = field_validator("labels")(_check_labels)

    @field_validator("objective")
    @classmethod
    def _percent(cls, v: float) -> float:
        if v < 1:
            raise ValueError(
                f"is a percentage (99.9 for 99.9 %), got {v!r}; did you mean {v * 100:g}?"
            )
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        seconds = parse_duration(v)
        if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
            raise ValueError(f"must be from 3d (the longest burn-rate window) to 90d, got {v!r}")
        return v

    @model_validator(mode="after")
    def _ood_needs_model(self) -> SLO:
        if self.sli.kind == "ood" and self.model == "*":
            raise ValueError("model: an ood SLI needs one model (its drift monitor judges OOD)")
        return self

    @property
    def target(self) -> float:
        """The objective as a ratio of good events, e.g. 0.999."""
        return self.objective / 100

    @property
    def error_budget(self) -> float:
        """The allowed ratio of bad events, ``1 - target`` (computed as Sloth does)."""
        return (100 - self.objective) / 100

    @property
    def window_s(self) -> int:
        """The SLO window (rolling), in seconds."""
        return parse_duration(self.window)

    @property
    def slo_id(self) -> str:
        """Sloth's id: ``<service>-<name>``."""
        return f"{self.service}-{self.name}"

    @property
    def signal_key(self) -> str:
        """The SLO's name as a signal segment (signal keys take no '-')."""
        return self.name.replace("-", "_")

    @property
    def alert_name(self) -> str:
        """The alert name shared by the page and ticket alerts (Sloth's ``alerting.name``)."""
        if self.alerting.name:
            return self.alerting.name
        return "".join(p.capitalize() for p in re.split(r"[-_]", self.name)) + "SLO"

    def fingerprint(self) -> str:
        """Identifies what is counted (SLI and model): counts survive only an unchanged SLI."""
        body = json.dumps(
            {"model": self.model, "sli": self.sli.model_dump(mode="json")}, sort_keys=True
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]


class SLOSet(BaseModel):
    """The SLOs of one definitions file, names unique."""

    model_config = ConfigDict(frozen=True)

    slos: tuple[SLO, ...]
    source: str = "<slos>"

    def __len__(self) -> int:
        return len(self.slos)

    def slo(self, name: str) -> SLO:
        """The SLO called ``name``; KeyError naming the known ones otherwise."""
        for s in self.slos:
            if s.name == name:
                return s
        raise KeyError(f"no SLO {name!r}; SLOs: {', '.join(s.name for s in self.slos)}")

    def each(self) -> Iterator[SLO]:
        """The SLOs in file order."""
        return iter(self.slos)


# -- loading ------------------------------------------------------------------------------------
def load_slos(path: str | os.PathLike[str]) -> SLOSet:
    """Read and validate a definitions file (native TOML/YAML or OpenSLO v1 YAML)."""
    from infertrail.slo.openslo import is_openslo, parse_openslo

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise SLOError(str(p), [f"unknown file type {suffix!r}; use .toml, .yaml or .yml"])
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SLOError(str(p), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        if suffix == ".toml":
            docs: list[Any] = [tomllib.loads(text)]
        else:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SLOError(str(p), [f"not valid {suffix[1:].upper()}: {exc}"]) from None
    if docs and is_openslo(docs[0]):
        return parse_openslo(docs, source=str(p))
    if len(docs) > 1:
        raise SLOError(str(p), ["a native definitions file is one document; got several"])
    return parse_slos(docs[0] if docs else {}, source=str(p))


def parse_slos(data: Any, *, source: str = "<slos>") -> SLOSet:
    """Validate native definitions: ``{service, labels, slos: [...]}``."""
    if not isinstance(data, Mapping):
        raise SLOError(source, [f"top level must be a table/mapping, got {type(data).__name__}"])
    problems = [
        f"unknown top-level key {k!r} (known: version, service, labels, slos)"
        for k in data
        if k not in ("version", "service", "labels", "slos")
    ]
    version = data.get("version", "infertrail/v1")
    if version != "infertrail/v1":
        problems.append(f"version must be 'infertrail/v1', got {version!r}")
    raw = data.get("slos")
    if not isinstance(raw, list) or not raw:
        problems.append("slos must be a non-empty list ([[slos]] in TOML)")
        raise SLOError(source, problems)
    common: dict[str, Any] = {}
    if "service" in data:
        common["service"] = data["service"]
    labels = data.get("labels", {})
    if not isinstance(labels, Mapping):
        problems.append(f"labels must be a table of strings, got {type(labels).__name__}")
        labels = {}
    bodies: list[tuple[str, dict[str, Any]]] = []
    for i, body in enumerate(raw):
        if not isinstance(body, Mapping):
            problems.append(f"slo #{i + 1}: must be a table, got {type(body).__name__}")
            continue
        name = body.get("name")
        where = f"slo {name!r}" if isinstance(name, str) and name else f"slo #{i + 1}"
        merged = {**common, **body}
        if labels:
            merged["labels"] = {**labels, **(body.get("labels") or {})}
        bodies.append((where, merged))
    return build_set(bodies, source=source, problems=problems)


def build_set(
    bodies: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    source: str,
    problems: list[str] | None = None,
    field_names: Mapping[str, str] | None = None,
) -> SLOSet:
    """Validate SLO bodies (``where`` names each in messages); SLOError lists every mistake.

    ``field_names`` renames native field paths in messages (OpenSLO input names its own).
    """
    problems = [] if problems is None else problems
    out: list[SLO] = []
    seen: set[str] = set()
    for where, body in bodies:
        name = body.get("name")
        if isinstance(name, str) and name in seen:
            problems.append(f"{where}: name is used by more than one SLO")
        seen.add(str(name))
        try:
            out.append(SLO.model_validate(body))
        except ValidationError as exc:
            problems.extend(f"{where}: {describe(e, field_names)}" for e in exc.errors())
    if problems:
        raise SLOError(source, problems)
    return SLOSet(slos=tuple(out), source=source)


def describe(err: ErrorDetails, field_names: Mapping[str, str] | None = None) -> str:
    """One pydantic error as '<field> must ..., got X', in the words of the definitions file."""
    loc = [str(p) for p in err["loc"]]
    # A discriminated union prefixes the tag ("sli.latency.threshold_seconds"): drop it.
    if len(loc) >= 2 and loc[0] == "sli" and loc[1] in SLI_KINDS:
        loc = [loc[0], *loc[2:]]
    field = ".".join(loc)
    if field_names:
        field = next(
            (
                new + field[len(old) :]
                for old, new in field_names.items()
                if field == old or field.startswith(old + ".")
            ),
            field,
        )
    return describe_error(
        err,
        field,
        tag_field=f"{field}.kind",
        tag_values=SLI_KINDS,
        value_error_sep=" ",
    )
