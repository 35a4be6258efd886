"""Telemetry names: the one place every span, log event, attribute, instrument and unit is spelled.

Classic ML inference has no OpenTelemetry semantic convention yet (semantic-conventions #3420),
so model and prediction attributes live in the ``infertrail.`` namespace, shaped after
OpenInference's classifier proposal. ``docs/conventions.md`` documents every name and unit, and
``tests/unit/telemetry/test_conventions.py`` fails on a name spelled anywhere else.

Attribute keys are plain constants (``MODEL_NAME``), instrument names ``METRIC_*``, span names
``SPAN_NAME_*``, units ``UNIT_*``. Every name here is what Prometheus rules, Grafana dashboards
and alert exports match on (after the exporter's ``.`` -> ``_`` and unit suffixes): renaming
one breaks them.
"""

from __future__ import annotations

# -- Instrumentation scopes -------------------------------------------------------------------
# The tracer, meter and logger of the service (exported as ``otel_scope_name``).
SCOPE = "infertrail"
# The compliance API's meter when it is given none (tests, embedding without a Telemetry).
SCOPE_COMPLIANCE = "infertrail.compliance"

# -- Units (UCUM; ``{...}`` annotations count things and add no Prometheus suffix) ------------
UNIT_SECONDS = "s"
UNIT_RATIO = "1"  # dimensionless: ratios, scores, probabilities, 0/1 flags
UNIT_PREDICTION = "{prediction}"
UNIT_ERROR = "{error}"
UNIT_ELEMENT = "{element}"
UNIT_FAILURE = "{failure}"
UNIT_EVENT = "{event}"
UNIT_SAMPLE = "{sample}"
UNIT_TOKEN = "{token}"  # noqa: S105 (LLM tokens, no secret)
UNIT_CURRENCY_UNIT = "{currency_unit}"
UNIT_OUTCOME = "{outcome}"
UNIT_REQUEST = "{request}"
UNIT_RECORD = "{record}"  # audit log records (tree sizes)

# -- Resource attributes (stable OpenTelemetry conventions, plus TEAM below) ------------------
SERVICE_NAME = "service.name"
SERVICE_VERSION = "service.version"
DEPLOYMENT_ENVIRONMENT_NAME = "deployment.environment.name"

# -- Inference: span, log and metric attributes -----------------------------------------------
MODEL_NAME = "infertrail.model.name"
MODEL_VERSION = "infertrail.model.version"
MODEL_SHA256 = "infertrail.model.sha256"
INPUT_SIZE = "infertrail.input.size"
PREDICTION_LABEL = "infertrail.prediction.label"
PREDICTION_SCORE = "infertrail.prediction.score"
PREDICTION_CONFIDENCE = "infertrail.prediction.confidence"
REQUEST_ID = "infertrail.request_id"
TEAM = "infertrail.team"
ENDPOINT = "infertrail.endpoint"
STATUS = "infertrail.status"
# Stable general conventions reused as they are
ERROR_TYPE = "error.type"

# -- Inference: spans and log events ----------------------------------------------------------
SPAN_NAME_INFERENCE = "inference"
# A request refused before it reached the model (bad input, bad request id).
SPAN_NAME_INFERENCE_REJECTED = "inference.rejected"
# The event name of the one log record per inference.
EVENT_NAME_INFERENCE = "infertrail.inference"

# -- Inference: instruments (the Prometheus exporter adds unit suffixes) ----------------------
METRIC_DURATION = "infertrail.inference.duration"
METRIC_CONFIDENCE = "infertrail.prediction.confidence"
METRIC_PREDICTIONS = "infertrail.predictions"
METRIC_ERRORS = "infertrail.inference.errors"
METRIC_INPUT_SIZE = "infertrail.input.size"

# Bucket boundaries, seconds: 0.1 ms .. 10 s, roughly x2.5 per step.
DURATION_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
INPUT_SIZE_BUCKETS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

# -- The telemetry pipeline itself ------------------------------------------------------------
METRIC_EXPORT_FAILURES = "infertrail.telemetry.export.failures"
EXPORT_SIGNAL = "signal"  # traces, metrics or logs
EXPORT_BACKEND = "backend"  # file, jsonl, otlp or custom
METRIC_TELEMETRY_DROPPED = "infertrail.telemetry.dropped"

# -- HTTP server (telemetry/httpserver.py, as opentelemetry-instrumentation-asgi emits them) ---
METRIC_HTTP_SERVER_DURATION = "http.server.request.duration"
# The stable HTTP conventions' advice for that histogram's buckets, in seconds.
HTTP_DURATION_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
# The server span's attributes that carry the query string: redacted (telemetry/redaction.py).
URL_QUERY = "url.query"
URL_FULL = "url.full"
HTTP_TARGET = "http.target"  # the old HTTP conventions (OTEL_SEMCONV_STABILITY_OPT_IN=http/dup)
HTTP_URL = "http.url"  # likewise
# The exception event every recorded exception becomes; its message is redacted on HTTP spans.
EVENT_NAME_EXCEPTION = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"
EXCEPTION_ESCAPED = "exception.escaped"

# -- Drift (drift/metrics.py: gauges over each model's latest drift report) -------------------
METRIC_DRIFT_SCORE = "infertrail.drift.score"
METRIC_DRIFT_SHARE = "infertrail.drift.share_drifted"
METRIC_DRIFT_DATASET = "infertrail.drift.dataset_drift"
METRIC_DRIFT_FEATURE_DISTANCE = "infertrail.drift.feature.distance"
METRIC_DRIFT_FEATURE_P_VALUE = "infertrail.drift.feature.p_value"
METRIC_DRIFT_FEATURE_DRIFTED = "infertrail.drift.feature.drifted"
METRIC_DRIFT_PREDICTION_DISTANCE = "infertrail.drift.prediction.distance"
METRIC_DRIFT_WINDOW_SAMPLES = "infertrail.drift.window.samples"
METRIC_DRIFT_CONFIDENCE_MEAN = "infertrail.drift.confidence.mean"
METRIC_DRIFT_LOW_CONFIDENCE = "infertrail.drift.confidence.low_rate"
METRIC_DRIFT_OOD_RATE = "infertrail.drift.ood_rate"
METRIC_DRIFT_WINDOW_SIGNAL = "infertrail.drift.window.signal"
METRIC_DRIFT_SLICE_SCORE = "infertrail.drift.slice.score"
METRIC_DRIFT_SLICE_SHARE = "infertrail.drift.slice.share_drifted"
METRIC_DRIFT_SLICE_SAMPLES = "infertrail.drift.slice.samples"
# Not namespaced; the exported alert rules and Grafana dashboards select on them as they are.
DRIFT_FEATURE = "feature"  # the input feature of a per-feature gauge
DRIFT_OUTPUT = "output"  # "label" or "confidence", of the prediction distance
DRIFT_SIGNAL = "signal"  # a window analyzer's signal key, e.g. "estimated.accuracy"
DRIFT_SLICE = "slice"  # a slice of a drift window, e.g. "tenant=acme" (docs/drift.md)

# -- SLOs (slo/evaluator.py) ------------------------------------------------------------------
METRIC_SLO_BUDGET_REMAINING = "infertrail.slo.error_budget.remaining"
METRIC_SLO_BURN_RATE = "infertrail.slo.burn_rate"
SLO_NAME = "infertrail.slo.name"
SLO_WINDOW = "infertrail.slo.window"  # the burn-rate window, e.g. "5m"

# -- Cost (cost/attribution.py: observable counters over the running totals) ------------------
METRIC_COST_CPU = "infertrail.cost.cpu"
METRIC_COST_ACCELERATOR = "infertrail.cost.accelerator"
METRIC_COST_TOKENS = "infertrail.cost.tokens"
METRIC_COST_AMOUNT = "infertrail.cost.amount"
METRIC_COST_PROCESS_CPU = "infertrail.cost.process.cpu"
COST_COMPONENT = "infertrail.cost.component"  # cpu, gpu, tokens or request
COST_CURRENCY = "infertrail.cost.currency"
COST_PRICE_VERSION = "infertrail.cost.price_version"
TOKEN_DIRECTION = "infertrail.token.direction"  # noqa: S105 (no secret); input/output

# -- Outcomes (outcomes/ingest.py counter, outcomes/performance.py window gauges) -------------
METRIC_OUTCOMES = "infertrail.outcomes"
OUTCOME_RESULT = "infertrail.outcome.result"  # accepted, duplicate or unknown
METRIC_OUTCOME_ACCURACY = "infertrail.outcome.accuracy"
METRIC_OUTCOME_PRECISION = "infertrail.outcome.precision"
METRIC_OUTCOME_RECALL = "infertrail.outcome.recall"
METRIC_OUTCOME_ROC_AUC = "infertrail.outcome.roc_auc"
METRIC_OUTCOME_BRIER = "infertrail.outcome.brier"
METRIC_OUTCOME_POSITIVE_RATE = "infertrail.outcome.positive_rate"
METRIC_OUTCOME_MEAN_VALUE = "infertrail.outcome.mean_value"
METRIC_OUTCOME_SAMPLES = "infertrail.outcome.samples"

# -- Alerting (alerting/delivery.py) ----------------------------------------------------------
METRIC_ALERT_NOTIFY_FAILURES = "infertrail.alert.notify.failures"
ALERT_RECEIVER = "infertrail.alert.receiver"
ALERT_RECEIVER_TYPE = "infertrail.alert.receiver.type"
# Not namespaced, like the drift attributes.
ALERT_REASON = "reason"  # connection, rate_limited, server_error, rejected, gave_up, ...

# -- Audit witnesses (runtime/witnesses.py; docs/witnesses.md) -------------------------------
METRIC_AUDIT_WITNESS_REQUESTS = "infertrail.audit.witness.requests"  # add-checkpoint, by result
AUDIT_WITNESS_NAME = "infertrail.audit.witness.name"  # the witness's key name
# cosigned, or why not: refused (a rollback or fork: 409/422), rejected (400, 403, 404),
# unreachable (connection, timeout, 5xx), bad_response
AUDIT_WITNESS_RESULT = "infertrail.audit.witness.result"
# The size of the newest checkpoint each witness cosigned (0: none yet).
METRIC_AUDIT_WITNESS_COSIGNED_SIZE = "infertrail.audit.witness.cosigned_size"
# Records the log signed that no quorum-cosigned checkpoint covers yet: alert on it.
METRIC_AUDIT_WITNESS_UNPUBLISHED = "infertrail.audit.witness.unpublished"

# -- Compliance API (compliance/api.py; requests refused with 401, 403 or 429) ----------------
METRIC_AUDIT_ACCESS_DENIED = "infertrail.audit.access.denied"
# Stable HTTP conventions, reused as they are
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
HTTP_ROUTE = "http.route"  # the route template: a raw path may carry a record number

# -- Audit timestamps (runtime/timestamps.py; docs/timestamps.md) -----------------------------
METRIC_AUDIT_TIMESTAMP_TRIES = "infertrail.audit.timestamp.tries"  # to get a token, by result
# "stamped", or why none was: connection, timeout, http_status, content_type, bad_reply,
# untrusted (audit/tsa.py), storage
AUDIT_TIMESTAMP_RESULT = "infertrail.audit.timestamp.result"
# Seconds the newest checkpoint has waited for a token (0 when every one seen has its token).
METRIC_AUDIT_TIMESTAMP_PENDING = "infertrail.audit.timestamp.pending"

# -- Generative AI (OpenTelemetry GenAI semantic conventions, pinned; docs/conventions.md) ----
# The gen_ai names are experimental and still moving (v1.42 moved them to their own repository
# with breaking changes pending), so infertrail pins one release and spells every name here.
# Emitted as pinned only with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental, as the
# OpenTelemetry GenAI instrumentations do; without it, the older names those instrumentations
# emit by default (GENAI_SYSTEM instead of GENAI_PROVIDER_NAME). See infertrail/genai/semconv.py.
GENAI_SEMCONV_VERSION = "1.41.1"
GENAI_OPT_IN = "gen_ai_latest_experimental"
GENAI_OPERATION_NAME = "gen_ai.operation.name"  # chat, text_completion, embeddings, ...
GENAI_PROVIDER_NAME = "gen_ai.provider.name"  # openai, anthropic, ... (v1.37 on)
GENAI_SYSTEM = "gen_ai.system"  # the same, before v1.37 (the default without the opt-in)
GENAI_REQUEST_MODEL = "gen_ai.request.model"
GENAI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GENAI_REQUEST_TOP_P = "gen_ai.request.top_p"
GENAI_REQUEST_TOP_K = "gen_ai.request.top_k"
GENAI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GENAI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GENAI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GENAI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GENAI_REQUEST_SEED = "gen_ai.request.seed"
GENAI_REQUEST_STREAM = "gen_ai.request.stream"
GENAI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GENAI_RESPONSE_ID = "gen_ai.response.id"
GENAI_RESPONSE_MODEL = "gen_ai.response.model"
GENAI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GENAI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GENAI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GENAI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GENAI_TOKEN_TYPE = "gen_ai.token.type"  # noqa: S105 (no secret); input or output
GENAI_INPUT_MESSAGES = "gen_ai.input.messages"  # opt-in content (JSON), redacted first
GENAI_OUTPUT_MESSAGES = "gen_ai.output.messages"  # likewise
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
# The event carrying opt-in message content on the pinned conventions
EVENT_NAME_GENAI_OPERATION_DETAILS = "gen_ai.client.inference.operation.details"
# infertrail's additions on a generation span (not in the GenAI conventions)
GENAI_STREAM_CHUNKS = "infertrail.gen_ai.stream.chunks"  # content chunks received
GENAI_CANCELLED = "infertrail.gen_ai.cancelled"  # the caller stopped reading the stream
GENAI_USAGE_SOURCE = "infertrail.gen_ai.usage.source"  # response, tokenizer or chunks
GENAI_TIME_PER_OUTPUT_TOKEN = "infertrail.gen_ai.time_per_output_token"  # noqa: S105 (seconds)
# GenAI instruments (histograms; recommended buckets of the conventions)
METRIC_GENAI_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_GENAI_TOKEN_USAGE = "gen_ai.client.token.usage"  # noqa: S105
METRIC_GENAI_TIME_TO_FIRST_TOKEN = "gen_ai.server.time_to_first_token"  # noqa: S105
METRIC_GENAI_TIME_PER_OUTPUT_TOKEN = "gen_ai.server.time_per_output_token"  # noqa: S105
# Generations by how they ended: ok, empty, refused (content_filter), truncated (length),
# cancelled or error: the business signals of LLM traffic (slo/business.py rules)
METRIC_GENAI_OUTCOMES = "infertrail.gen_ai.outcomes"
GENAI_OUTCOME = "infertrail.gen_ai.outcome"
GENAI_DURATION_BUCKETS_S = tuple(0.01 * 2**k for k in range(14))  # 0.01 .. 81.92
GENAI_TOKEN_BUCKETS = tuple(4**k for k in range(14))  # 1 .. 67108864
GENAI_TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
GENAI_TPOT_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip

# -- Cardinality guard (monitor.py): attribute values folded into "other" ----------------------
METRIC_ATTRIBUTE_OVERFLOW = "infertrail.telemetry.attribute_overflow"
OVERFLOW_ATTRIBUTE = "attribute"  # the attribute whose values were folded
OVERFLOW_VALUE = "other"
