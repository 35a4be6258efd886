"""The versioned price table: what a CPU core-hour, a GPU-hour, a GiB-hour of RAM, a request and a
token cost, and from when.

A table is a list of versions, each in force from its ``effective_from`` until the next one
starts; usage is priced by the version in force at its own time, and every cost row keeps the
name of the version that priced it. Without a file, the built-in table holds one version with
OpenCost's documented defaults (``configs/default.json`` of opencost/opencost, "based on GCP
us-central1"). The file is TOML or JSON; docs/cost.md shows one. Every mistake is reported with
the version and field it is in.

Per-model prices are keyed by the model's name or by ``provider/model`` (``openai/gpt-4o-mini``):
the same model name served by two providers (a hosted API and a self-hosted copy, say) costs
what each provider charges. A generation (an event carrying ``generation``) is priced by its
``provider/model`` key first, then by the model name alone.
"""

from __future__ import annotations

import bisect
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "OPENCOST_DEFAULTS",
    "CostBreakdown",
    "ModelPrice",
    "PriceError",
    "PriceTable",
    "PriceVersion",
    "default_price_table",
    "load_price_table",
    "parse_price_table",
]

#: OpenCost's default custom-provider prices (USD): CPU per vCPU-hour, RAM per GiB-hour, GPU per
#: GPU-hour. Source: opencost/opencost configs/default.json ("Default prices based on GCP
#: us-central1"), the prices OpenCost uses when no cloud pricing is configured.
OPENCOST_DEFAULTS: Mapping[str, float] = {
    "cpu_core_hour": 0.031611,
    "ram_gib_hour": 0.004237,
    "gpu_hour": 0.95,
}
DEFAULT_VERSION = "opencost-default-gcp-us-central1"
_EPOCH = "1970-01-01T00:00:00Z"
_EPOCH_DT = datetime(1970, 1, 1, tzinfo=UTC)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"
# A model key: a model name, or provider/model (names as gen_ai.provider.name and
# gen_ai.request.model carry them; model names may hold '/' themselves, as in
# "meta-llama/Llama-3.1-8B", so a provider key splits at the first '/').
_MODEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,255}")


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """A cost split by what it pays for, in the price version's currency."""

    cpu: float = 0.0
    gpu: float = 0.0
    tokens: float = 0.0
    request: float = 0.0

    @property
    def total(self) -> float:
        """The sum of the components."""
        return self.cpu + self.gpu + self.tokens + self.request


class PriceError(ValueError):
    """A price table that does not validate; the message names the version and field."""


class ModelPrice(BaseModel):
    """Prices charged per use of one model, on top of the resources it consumed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_request: float = Field(0.0, ge=0, allow_inf_nan=False)
    per_million_input_tokens: float = Field(0.0, ge=0, allow_inf_nan=False)
    per_million_output_tokens: float = Field(0.0, ge=0, allow_inf_nan=False)
    gpu_hour: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Overrides the version's GPU-hour rate."
    )


_FREE = ModelPrice()


class PriceVersion(BaseModel):
    """One version of the table: resource rates and per-model prices in force from a time on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=_NAME)
    effective_from: str = Field(description="RFC 3339 time from which this version applies.")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    cpu_core_hour: float = Field(OPENCOST_DEFAULTS["cpu_core_hour"], ge=0, allow_inf_nan=False)
    gpu_hour: float = Field(OPENCOST_DEFAULTS["gpu_hour"], ge=0, allow_inf_nan=False)
    ram_gib_hour: float = Field(OPENCOST_DEFAULTS["ram_gib_hour"], ge=0, allow_inf_nan=False)
    models: dict[str, ModelPrice] = Field(default_factory=dict)

    @field_validator("effective_from")
    @classmethod
    def _rfc3339(cls, v: str) -> str:
        _parse_time(v)
        return v

    @field_validator("models")
    @classmethod
    def _model_keys(cls, v: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        for key in v:
            if not _MODEL_KEY.fullmatch(key) or key.endswith("/") or "//" in key:
                raise ValueError(
                    f"model key {key!r} must be a model name or provider/model (e.g. "
                    "'openai/gpt-4o-mini'): letters, digits and '._:@+-/', starting with a "
                    "letter or digit, no empty part"
                )
        return v

    @property
    def effective_from_ns(self) -> int:
        """``effective_from`` as Unix nanoseconds."""
        return _parse_time(self.effective_from)

    def model(self, name: str, provider: str | None = None) -> ModelPrice:
        """The per-use prices of model ``name``: those of ``provider/name`` when the table has
        that key, else of ``name`` (all zero when the table lists neither)."""
        if provider:
            found = self.models.get(f"{provider}/{name}")
            if found is not None:
                return found
        return self.models.get(name, _FREE)

    def cost_of(
        self,
        model: str,
        *,
        provider: str | None = None,
        requests: int,
        cpu_seconds: float,
        accelerator_seconds: float = 0.0,
        tokens_in: int = 0,
        tokens_out: int = 0,
    ) -> CostBreakdown:
        """What this usage of ``model`` (of ``provider``, for a generation) costs under this
        version, by component."""
        m = self.model(model, provider)
        gpu_rate = self.gpu_hour if m.gpu_hour is None else m.gpu_hour
        return CostBreakdown(
            cpu=cpu_seconds / 3600.0 * self.cpu_core_hour,
            gpu=accelerator_seconds / 3600.0 * gpu_rate,
            tokens=(
                tokens_in * m.per_million_input_tokens + tokens_out * m.per_million_output_tokens
            )
            / 1e6,
            request=requests * m.per_request,
        )


def _parse_time(v: str) -> int:
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(f"must be an RFC 3339 time such as {_EPOCH}, got {v!r}") from None
    if t.tzinfo is None:
        raise ValueError(f"must carry a UTC offset (e.g. a trailing Z), got {v!r}")
    return (t - _EPOCH_DT) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True)
class PriceTable:
    """Price versions ordered by ``effective_from``; :meth:`at` picks the one in force."""

    versions: tuple[PriceVersion, ...]
    source: str = "built-in"
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.versions:
            raise PriceError(f"{self.source}: a price table needs at least one version")
        starts = tuple(v.effective_from_ns for v in self.versions)
        if list(starts) != sorted(starts):
            raise PriceError(f"{self.source}: versions must be listed by effective_from")
        object.__setattr__(self, "_starts", starts)  # frozen: set once, here

    def at(self, time_ns: int) -> PriceVersion:
        """The version in force at ``time_ns`` (the first one for times before every start)."""
        i = bisect.bisect_right(self._starts, time_ns) - 1
        return self.versions[max(i, 0)]

    def next_change(self, time_ns: int) -> int | None:
        """When the next version after ``time_ns`` starts (None if none does)."""
        i = bisect.bisect_right(self._starts, time_ns)
        return self._starts[i] if i < len(self._starts) else None

    def version(self, name: str) -> PriceVersion:
        """The version called ``name``; KeyError lists the known ones."""
        for v in self.versions:
            if v.version == name:
                return v
        known = ", ".join(v.version for v in self.versions)
        raise KeyError(f"no price version {name!r}; versions: {known}")


def default_price_table() -> PriceTable:
    """One version, from the epoch on, at OpenCost's default rates and no per-model prices."""
    return PriceTable((PriceVersion(version=DEFAULT_VERSION, effective_from=_EPOCH),))


def load_price_table(path: str | Path) -> PriceTable:
    """Read and validate a price table file (``.toml`` or ``.json``); PriceError on mistakes."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise PriceError(f"{p}: unknown price table type {suffix!r}; use .toml or .json")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise PriceError(f"{p}: not valid {suffix[1:].upper()}: {exc}") from None
    return parse_price_table(data, source=str(p))


def parse_price_table(data: Any, *, source: str = "<prices>") -> PriceTable:
    """Validate parsed table data: ``{"versions": [...]}``, oldest version first."""
    if not isinstance(data, Mapping) or set(data) != {"versions"}:
        got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise PriceError(f"{source}: top level must hold exactly 'versions', got {got}")
    raw = data["versions"]
    if not isinstance(raw, list) or not raw:
        raise PriceError(f"{source}: versions must be a non-empty list ([[versions]] in TOML)")
    versions: list[PriceVersion] = []
    for i, body in enumerate(raw):
        name = body.get("version") if isinstance(body, Mapping) else None
        where = f"version {name!r}" if isinstance(name, str) and name else f"version #{i + 1}"
        try:
            versions.append(PriceVersion.model_validate(body))
        except ValidationError as exc:
            e = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in e["loc"]) or "body"
            if e["type"] == "extra_forbidden":
                msg = "is not a known field"
            elif e["type"] == "missing":
                msg = "is required"
            else:
                msg = str(e.get("ctx", {}).get("error", e["msg"]))
                if not isinstance(e.get("input"), Mapping):  # a table says itself what is wrong
                    msg += f" (got {e.get('input')!r})"
            raise PriceError(f"{source}: {where}: {field}: {msg}") from None
    names = [v.version for v in versions]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PriceError(f"{source}: version {dupes[0]!r} is listed more than once")
    starts = [v.effective_from_ns for v in versions]
    for prev, cur, v in zip(starts, starts[1:], versions[1:], strict=False):
        if cur <= prev:
            raise PriceError(
                f"{source}: version {v.version!r}: effective_from {v.effective_from} must be "
                "later than the previous version's"
            )
    return PriceTable(tuple(versions), source=source)
