"""Settings: one place for every knob, with defaults that work on a laptop.

Precedence (highest first): keyword arguments, ``INFERTRAIL_*`` environment variables, the
standard ``OTEL_*`` variables for the telemetry knobs they name, a TOML file (``INFERTRAIL_CONFIG``
or ``./infertrail.toml``), then the defaults below.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from infertrail.otlp import DEFAULT_PROTOCOL, PROTOCOLS, OtlpProtocol, resolve_otlp

DEFAULT_CONFIG_FILE = "infertrail.toml"
# The audit log's origin when none is set: this host part plus the percent-encoded service name.
AUDIT_ORIGIN_HOST = "infertrail.local"

# Query parameters telemetry_query_allowlist refuses: their values name a subject or are free
# text (the compliance API's subject_id, pseudonym and justification; the credit applicant id).
SUBJECT_QUERY_PARAMETERS = frozenset(
    {"subject_id", "subject", "pseudonym", "applicant_id", "justification", "reason"}
)
_QUERY_NAME = re.compile(r"[^&=#?%+\s\x00-\x1f\x7f]{1,64}")

# Standard OpenTelemetry variables and the setting each one feeds.
_OTEL_ENV = {
    "OTEL_SERVICE_NAME": "service_name",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "otlp_endpoint",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "otlp_traces_endpoint",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "otlp_metrics_endpoint",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "otlp_logs_endpoint",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "otlp_protocol",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "otlp_traces_protocol",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "otlp_metrics_protocol",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "otlp_logs_protocol",
    "OTEL_TRACES_SAMPLER": "traces_sampler",
    "OTEL_TRACES_SAMPLER_ARG": "traces_sampler_arg",
    "OTEL_METRIC_EXPORT_INTERVAL": "metric_export_interval_ms",
}
_OTLP_ENDPOINT_FIELDS = (
    "otlp_endpoint",
    "otlp_traces_endpoint",
    "otlp_metrics_endpoint",
    "otlp_logs_endpoint",
)
_OTLP_PROTOCOL_FIELDS = (
    "otlp_protocol",
    "otlp_traces_protocol",
    "otlp_metrics_protocol",
    "otlp_logs_protocol",
)


def _variables(field: str) -> str:
    """The environment variables that set ``field``, for error messages."""
    names = [f"INFERTRAIL_{field.upper()}"]
    names += [var for var, name in _OTEL_ENV.items() if name == field]
    return f"{field} ({' or '.join(names)})"


def default_audit_origin(service_name: str) -> str:
    """The audit log origin derived from ``service_name``: ``infertrail.local/<name>``.

    Every character outside RFC 3986's unreserved set (letters, digits, ``-._~``) is
    percent-encoded, so any service name gives a valid C2SP origin (no spaces, '+' or control
    characters) and distinct names give distinct origins: ``"Credit API"`` ->
    ``"infertrail.local/Credit%20API"``. Lone surrogates (undecodable bytes in an environment
    variable) are encoded too rather than refused.
    """
    encoded = quote(service_name, safe="-._~", errors="surrogatepass")
    return f"{AUDIT_ORIGIN_HOST}/{encoded}"


class _OtelEnvSource(PydanticBaseSettingsSource):
    """Reads the standard ``OTEL_*`` variables into the settings they correspond to."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {name: os.environ[var] for var, name in _OTEL_ENV.items() if os.environ.get(var)}


class WitnessEndpoint(BaseModel):
    """A witness of the audit log (docs/witnesses.md): where it takes checkpoints, its key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Its submission prefix: add-checkpoint is POSTed below it.")
    key: str = Field(
        min_length=1, description="Its cosigner verifier key, <name>+<key id>+<base64(0x04 key)>."
    )

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError(f"a witness url must be http(s)://host[/prefix], got {v!r}")
        return v.rstrip("/")


class Settings(BaseSettings):
    """All infertrail settings. Build with ``Settings()``; override with keyword arguments."""

    model_config = SettingsConfigDict(env_prefix="INFERTRAIL_", extra="forbid")

    data_dir: Path = Field(Path(".infertrail"), description="Root of all local state.")
    service_name: str = Field("infertrail-demo", min_length=1)
    service_version: str = "0.1.0"
    deployment_environment: str = "dev"
    team: str = Field("default", min_length=1, description="Cost and ownership unit.")

    # Telemetry
    telemetry_files: bool = Field(True, description="Write OTLP-JSON lines under data_dir.")
    otlp_endpoint: str | None = Field(
        None, description="OTLP base URL for every signal, e.g. http://127.0.0.1:4318."
    )
    otlp_traces_endpoint: str | None = Field(
        None, description="OTLP URL for traces, used as is (wins over otlp_endpoint)."
    )
    otlp_metrics_endpoint: str | None = Field(
        None, description="OTLP URL for metrics, used as is (wins over otlp_endpoint)."
    )
    otlp_logs_endpoint: str | None = Field(
        None, description="OTLP URL for logs, used as is (wins over otlp_endpoint)."
    )
    otlp_protocol: OtlpProtocol = Field(DEFAULT_PROTOCOL, description="'grpc' or 'http/protobuf'.")
    otlp_traces_protocol: OtlpProtocol | None = Field(
        None, description="Protocol for traces (None: otlp_protocol)."
    )
    otlp_metrics_protocol: OtlpProtocol | None = Field(
        None, description="Protocol for metrics (None: otlp_protocol)."
    )
    otlp_logs_protocol: OtlpProtocol | None = Field(
        None, description="Protocol for logs (None: otlp_protocol)."
    )
    set_global_providers: bool = Field(
        True,
        description="Make infertrail's providers the OpenTelemetry globals, unless the "
        "application has set its own.",
    )
    traces_sampler: str = "parentbased_always_on"
    traces_sampler_arg: float = Field(1.0, ge=0.0, le=1.0)
    metric_export_interval_ms: int = Field(10_000, ge=100)
    telemetry_max_label_values: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Distinct prediction labels (and GenAI model names) a metric series may "
        "carry; more, or free text, fold into 'other' and count in "
        "infertrail.telemetry.attribute_overflow.",
    )
    genai_content_max_chars: int = Field(
        4096,
        ge=0,
        le=1_000_000,
        description="Opt-in GenAI message content (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_"
        "CONTENT) is cut to this many characters per message, after redaction.",
    )
    log_raw_input: bool = Field(False, description="Put raw input text in log lines.")
    telemetry_query_allowlist: list[str] = Field(
        default_factory=list,
        description="Query parameters whose values HTTP spans keep, except on the audit and "
        "privacy routes; every other value is REDACTED (docs/privacy.md).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_text_chars: int = Field(10_000, ge=1)

    # Audit
    audit_enabled: bool = True
    audit_origin: str = Field(
        "",
        description="C2SP log origin, also the signing key's name (empty or unset: "
        "infertrail.local/<service_name>, see default_audit_origin).",
    )
    audit_batch_max: int = Field(4096, ge=1, description="Records per group commit, at most.")
    audit_batch_wait_ms: float = Field(
        0.0,
        ge=0.0,
        description="Extra wait for a fuller batch (0: what queues during an fsync is the next).",
    )
    audit_queue_max: int = Field(65_536, ge=1, description="Bounded queue: backpressure beyond.")
    audit_wait_durable: bool = Field(
        True, description="Answer a request only once its audit record is durable."
    )
    audit_seal_interval_s: float = Field(
        60.0, gt=0, description="How often committed records are sealed into the lake."
    )
    audit_lake_url: str | None = Field(
        None, description="fsspec URL or path of the Parquet lake (default <data_dir>/audit/lake)."
    )
    audit_compact: bool = Field(
        True,
        description="After sealing, write a subject-sorted copy of each closed month (fast "
        "subject queries; the month's lake storage doubles).",
    )
    audit_compact_grace_s: float = Field(
        86_400.0,
        ge=0,
        description="A month counts as closed this long after its end; records sealed into it "
        "later stay in hour files only (still queried).",
    )
    audit_retention_class: str = Field("eu-ai-act-6m", min_length=1)

    # Receipts: every decision's receipt names its log by origin and shard (docs/receipts.md)
    audit_shard: str = Field(
        "0",
        pattern=r"^[!-~]{1,64}$",
        description="Which log of a fleet this data directory's is, as decision receipts name "
        "it (1-64 printable ASCII characters; a single log is shard 0).",
    )

    # Health and recovery from storage faults: readiness (/readyz), the audit log reopening itself
    audit_retry_s: float = Field(
        1.0,
        gt=0,
        description="First retry after a write error failed the audit log, or a lake seal "
        "failed (disk full, read-only, lake unreachable); doubled per failed try.",
    )
    audit_retry_max_s: float = Field(
        10.0, gt=0, description="Longest wait between those retries (seconds)."
    )
    ready_min_free_bytes: int = Field(
        1 << 20,
        ge=0,
        description="Readiness fails while the audit log's, the lake's or the privacy "
        "databases' file system has less free space than this (0: not checked).",
    )

    # tlog-tiles: the audit log served read-only to monitors and witnesses (docs/verification.md)
    tiles_prefix: str = Field(
        "/tlog",
        pattern=r"^(/[A-Za-z0-9._~-]+)+$",
        description="URL prefix of the tlog-tiles routes (instrument(tiles_api=True)): "
        "<prefix>/checkpoint and <prefix>/tile/...",
    )
    tiles_entries: bool = Field(
        False,
        description="Also serve entry bundles (<prefix>/tile/entries/...): every audit record's "
        "canonical bytes to whoever reaches the route; hash tiles alone suffice to monitor.",
    )

    # Timestamps: RFC 3161 tokens over the audit checkpoints (docs/timestamps.md)
    audit_tsa_url: str | None = Field(
        None,
        description="Time-stamp authority (RFC 3161 over HTTP) that stamps the audit "
        "checkpoints in the background; none: no timestamps.",
    )
    audit_tsa_roots_file: Path | None = Field(
        None,
        description="PEM file of the TSA's root certificate(s) a token must chain to (needed "
        "with audit_tsa_url; `infertrail audit verify` checks the tokens with it).",
    )
    audit_tsa_interval_s: float = Field(
        60.0, gt=0, description="At most one token per this many seconds, when the log grew."
    )
    audit_tsa_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for the TSA's answer (seconds)."
    )

    @field_validator("audit_tsa_url")
    @classmethod
    def _tsa_url_is_http(cls, v: str | None) -> str | None:
        if not v:  # an empty variable is the same as an unset one
            return None
        if urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).netloc:
            raise ValueError(f"audit_tsa_url must be an http:// or https:// URL, got {v!r}")
        return v

    @model_validator(mode="after")
    def _tsa_has_roots(self) -> Self:
        if self.audit_tsa_url is not None and self.audit_tsa_roots_file is None:
            raise ValueError(
                "audit_tsa_url needs audit_tsa_roots_file (INFERTRAIL_AUDIT_TSA_ROOTS_FILE): "
                "the TSA's root certificate, without which its tokens prove nothing"
            )
        return self

    # Witnesses: the audit checkpoints cosigned outside the operator's reach (docs/witnesses.md)
    audit_witnesses: list[WitnessEndpoint] = Field(
        default_factory=list,
        description="C2SP witnesses that cosign the audit log's checkpoints, [{url, key}]; "
        "`audit verify` also asks them what they cosigned. None: no witnesses.",
    )
    audit_witness_quorum: int | None = Field(
        None,
        ge=1,
        description="How many witnesses must cosign a checkpoint for it to count as published "
        "(None: a majority of audit_witnesses).",
    )
    audit_witness_interval_s: float = Field(
        10.0, gt=0, description="How often the newest checkpoint goes to the witnesses."
    )
    audit_witness_timeout_s: float = Field(
        5.0, gt=0, description="Longest wait for one witness's answer (seconds)."
    )

    @model_validator(mode="after")
    def _witness_quorum_is_reachable(self) -> Self:
        quorum, count = self.audit_witness_quorum, len(self.audit_witnesses)
        if quorum is not None and quorum > count:
            raise ValueError(
                f"audit_witness_quorum ({quorum}) is more than the {count} audit_witnesses"
            )
        return self

    # Privacy: the restricted raw-payload store (off by default)
    raw_payloads_enabled: bool = Field(
        False, description="Keep raw inputs, encrypted per subject, for break-glass reads."
    )
    raw_payloads_retention_days: float = Field(
        7.0, gt=0, description="Raw payloads are purged this long after they are stored."
    )
    raw_payloads_purge_interval_s: float = Field(
        3600.0, gt=0, description="How often the background purger deletes expired payloads."
    )
    raw_payloads_kek_source: str = Field(
        "keyring",
        min_length=1,
        description="Key-encryption keys: 'keyring', or 'package.module:factory' (KMS, Vault).",
    )

    # Retention (docs/retention.md): telemetry file rotation; expired months' keys shredded
    telemetry_file_max_mb: float = Field(
        50.0, gt=0, description="A telemetry file is rotated before it grows past this size."
    )
    telemetry_file_max_age_h: float = Field(
        24.0, gt=0, description="... or when a line falls in a later window of this many hours."
    )
    telemetry_files_max_total_mb: float = Field(
        500.0,
        gt=0,
        description="Oldest rotated telemetry files are deleted beyond this total (the four "
        "files being written count too: at least 4 x telemetry_file_max_mb).",
    )
    retention_enforce: bool = Field(
        True,
        description="Shred expired months' keys in the background (false, e.g. for a legal "
        "hold: nothing is shredded unless `infertrail retention apply` is run).",
    )
    retention_interval_s: float = Field(
        3600.0, gt=0, description="How often the service applies retention (first: at start)."
    )

    # Drift monitoring and alerting
    drift_enabled: bool = Field(
        True, description="Compare sampled live inputs with each served model's reference profile."
    )
    drift_sample_rate: float = Field(
        1.0, gt=0.0, le=1.0, description="Share of inferences sampled into drift windows."
    )
    drift_window_size: int = Field(
        500, ge=1, description="A drift window closes at this many samples."
    )
    drift_window_seconds: float | None = Field(
        300.0,
        gt=0,
        description="... or when this old, if it holds 30 samples (None: by count only).",
    )
    drift_quality: bool = Field(
        True,
        description="Data-quality checks of every drift window (docs/data-quality.md), against "
        "<models_dir>/<model>/quality.json or the schema inferred from the profile.",
    )
    drift_estimates: bool = Field(
        True,
        description="Label-free performance estimates (CBPE) of every drift window, for models "
        "with a fitted <models_dir>/<model>/cbpe.json (docs/estimation.md).",
    )
    drift_multivariate: str = Field(
        "reconstruction",
        pattern=r"^(|reconstruction|domain_classifier|reconstruction,domain_classifier|"
        r"domain_classifier,reconstruction)$",
        description="Multivariate drift statistics judged per window (docs/drift.md): "
        "'reconstruction', 'domain_classifier' (one classifier fit per window), both "
        "(comma-separated) or '' for none.",
    )
    drift_embedding: bool = Field(
        True,
        description="Prompt drift of every drift window (docs/drift.md, 'Prompt drift (LLM)'): "
        "an MMD test of the prompts' hashed n-gram embeddings, for models with "
        "<models_dir>/<model>/embedding.npz.",
    )
    drift_slices: str = Field(
        "",
        max_length=2000,
        description="Slices judged on their own in every drift window, ';'-separated: 'tenant', "
        "'endpoint', 'team', 'feature:NAME' or 'feature:NAME:EDGE,EDGE,...' (docs/drift.md); a "
        "feature slice applies to the models that have the feature.",
    )
    drift_max_slices: int = Field(
        20, ge=1, le=1000, description="Value slices per slice spec; other values fold into other."
    )
    drift_min_slice_samples: int = Field(
        30, ge=1, description="A slice with fewer rows in a window is not judged."
    )
    alert_rules_file: Path | None = Field(
        None, description="Alert rules, TOML or YAML (docs/alerting.md); none: no alerting."
    )
    alert_state_file: Path | None = Field(
        None, description="Alert state and outbox (default <data_dir>/alerts/state.json)."
    )
    slo_file: Path | None = Field(
        None, description="SLO definitions, native or OpenSLO v1 (docs/slo.md); none: no SLOs."
    )

    # Cost attribution (docs/cost.md)
    cost_enabled: bool = Field(True, description="Price every inference and sum it per hour.")
    cost_prices_file: Path | None = Field(
        None, description="Versioned price table (.toml/.json); default: OpenCost's rates."
    )
    cost_flush_interval_s: float = Field(
        10.0, gt=0, description="How often cost sums are written and the process is sampled."
    )
    cost_reserved_cores: float | None = Field(
        None, gt=0, description="Cores reserved for the service; unused ones are idle capacity."
    )

    # Outcomes joined back to predictions (docs/outcomes.md)
    outcomes_enabled: bool = Field(True, description="Index predictions; accept outcomes.")
    outcome_positive_labels: dict[str, str] = Field(
        default_factory=lambda: {"credit": "1", "sentiment": "positive"},
        description="Per model, the outcome label its score is the probability of (binary).",
    )
    outcome_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Binary models predict positive at score >= this."
    )
    outcome_window: int = Field(
        200, ge=10, description="Joined outcomes per performance window (alert signals)."
    )
    outcome_batch_max: int = Field(10_000, ge=1, description="Outcomes per request, at most.")

    # HTTP request hardening of every instrumented app: body limits, JSON checks, the
    # compliance API's rate (web/guard.py; README "Instrumenting your own service")
    http_max_body_bytes: int = Field(
        65_536, ge=1, description="Largest request body (bytes) of a route not in http_body_limits."
    )
    http_body_limits: dict[str, int] = Field(
        default_factory=lambda: {"/v1/outcomes": 8 * 1024 * 1024},
        description="Per path prefix, its own body limit in bytes (outcome batches are larger).",
    )
    http_max_json_depth: int = Field(
        32, ge=1, le=512, description="Deepest nesting of arrays and objects in a JSON body."
    )
    http_raw_body_paths: list[str] = Field(
        default_factory=list,
        description="Path prefixes whose bodies are not JSON (no 415, no JSON checks; limited).",
    )
    console_session_minutes: int = Field(
        480,
        ge=5,
        le=7 * 24 * 60,
        description="How long a web console login lasts (docs/console.md); revoking the API "
        "key ends it sooner.",
    )
    compliance_rate_per_s: float = Field(
        5.0, gt=0, description="Compliance API requests per second per API key (429 beyond)."
    )
    compliance_burst: int = Field(20, ge=1, description="... with bursts of up to this many.")

    @field_validator(*_OTLP_ENDPOINT_FIELDS)
    @classmethod
    def _endpoint_is_url(cls, v: str | None, info: ValidationInfo) -> str | None:
        if not v:  # OpenTelemetry: an empty variable is the same as an unset one
            return None
        where = _variables(str(info.field_name))
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018  (parsed lazily: raises here for a bad port)
        except ValueError as exc:
            raise ValueError(f"{where} is not a valid URL ({exc}): {v!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{where} must start with http:// or https:// and name a host, got {v!r}"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"{where} must not have a query or fragment, got {v!r}")
        # Signal endpoints are used as they are; the base gets "/v1/<signal>" appended.
        return v.rstrip("/") if info.field_name == "otlp_endpoint" else v

    @field_validator(*_OTLP_PROTOCOL_FIELDS, mode="before")
    @classmethod
    def _protocol_is_supported(cls, v: Any, info: ValidationInfo) -> Any:
        if v == "":  # OpenTelemetry: an empty variable is the same as an unset one
            return DEFAULT_PROTOCOL if info.field_name == "otlp_protocol" else None
        if v is None or v in PROTOCOLS or not isinstance(v, str):
            return v  # valid, or a wrong type that the field's own validation names
        valid = " or ".join(repr(p) for p in PROTOCOLS)
        where = _variables(str(info.field_name))
        if v == "http/json":
            raise ValueError(
                f"{where} is 'http/json', which the OpenTelemetry Python SDK does not "
                f"support; valid: {valid}"
            )
        raise ValueError(f"{where} must be {valid}, got {v!r}")

    @field_validator("telemetry_query_allowlist")
    @classmethod
    def _allowlist_names_no_subject(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _QUERY_NAME.fullmatch(name):
                raise ValueError(
                    f"telemetry_query_allowlist: {name[:80]!r} is not a query parameter name "
                    "(1 to 64 characters, none of '&', '=', '#', '?', '%', '+', spaces or "
                    "control characters)"
                )
            if name.lower() in SUBJECT_QUERY_PARAMETERS:
                raise ValueError(
                    f"telemetry_query_allowlist: {name!r} names a subject or carries free text; "
                    "its value is never kept in telemetry (remove it)"
                )
        return v

    @field_validator("audit_origin")
    @classmethod
    def _origin_is_valid(cls, v: str) -> str:
        # The origin is the first line of every checkpoint and the name of the signing key:
        # C2SP forbids spaces, '+' and control characters there (audit/checkpoint.py checks).
        if any(c.isspace() or c < " " or c == "+" or "\ud800" <= c <= "\udfff" for c in v):
            raise ValueError(
                "audit_origin must be a C2SP log origin, a schema-less URL such as "
                f"'{AUDIT_ORIGIN_HOST}/credit-api' without spaces, '+' or control characters, "
                f"got {v!r}"
            )
        return v

    @field_validator("telemetry_files_max_total_mb")
    @classmethod
    def _total_holds_the_open_files(cls, v: float, info: ValidationInfo) -> float:
        # Retention: the four files being written are never deleted, so the bound must hold them.
        per_file = info.data.get("telemetry_file_max_mb")
        if per_file is not None and v < 4 * per_file:
            raise ValueError(
                f"telemetry_files_max_total_mb ({v:g}) must be at least 4 x "
                f"telemetry_file_max_mb ({per_file:g}): the four files being written count"
            )
        return v

    @model_validator(mode="after")
    def _derive_and_cross_check(self) -> Self:
        if not self.audit_origin:
            self.audit_origin = default_audit_origin(self.service_name)
        resolve_otlp(self)  # ValueError for an endpoint its protocol cannot use
        return self

    @model_validator(mode="after")
    def _retry_intervals_in_order(self) -> Self:
        if self.audit_retry_s > self.audit_retry_max_s:
            raise ValueError(
                f"audit_retry_s ({self.audit_retry_s}) must not exceed audit_retry_max_s "
                f"({self.audit_retry_max_s})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("INFERTRAIL_CONFIG", DEFAULT_CONFIG_FILE))
        if "INFERTRAIL_CONFIG" in os.environ and not toml_file.is_file():
            raise FileNotFoundError(f"INFERTRAIL_CONFIG names {toml_file}, which does not exist")
        return (
            init_settings,
            env_settings,
            _OtelEnvSource(settings_cls),
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    # Derived locations: one layout under data_dir.
    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def telemetry_dir(self) -> Path:
        return self.data_dir / "telemetry"

    @property
    def audit_dir(self) -> Path:
        return self.data_dir / "audit"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def audit_log_dir(self) -> Path:
        return self.audit_dir / "log"

    @property
    def lake_url(self) -> str:
        return self.audit_lake_url or str(self.audit_dir / "lake")

    @property
    def signing_key_file(self) -> Path:
        return self.keys_dir / "audit.key"

    @property
    def keyring_file(self) -> Path:
        return self.keys_dir / "keyring.json"

    @property
    def privacy_dir(self) -> Path:
        return self.data_dir / "privacy"

    @property
    def alert_state_path(self) -> Path:
        return self.alert_state_file or self.data_dir / "alerts" / "state.json"

    @property
    def slo_counts_path(self) -> Path:
        return self.data_dir / "slo" / "counts.json"

    def ensure_dirs(self) -> None:
        """Create the data directory tree on first use."""
        for d in (self.data_dir, self.models_dir, self.telemetry_dir, self.audit_dir):
            d.mkdir(parents=True, exist_ok=True)
