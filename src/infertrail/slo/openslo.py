"""OpenSLO v1 input: ``kind: SLO`` (and the ``kind: SLI`` it references) mapped onto native SLOs.

Supported: a ratio SLI (``ratioMetric`` with ``good`` and ``total``) whose metric sources have
``type: infertrail`` and, as ``spec``, the native SLI table (``kind`` and its parameters, plus
``model``); one objective (``target`` or ``targetPercent``); one rolling ``timeWindow``;
``budgetingMethod: Occurrences``. Everything else OpenSLO can say (threshold metrics, ``bad``
or ``raw`` ratios, calendar windows, time slices, alert policies, data sources) is refused with
a message naming the document and field, never ignored. Alert routing, which OpenSLO keeps in
AlertPolicy objects, comes from annotations: ``infertrail.dev/alert-name``,
``infertrail.dev/page-receivers`` and ``infertrail.dev/ticket-receivers`` (comma-separated).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from infertrail.slo.definitions import SLOError, SLOSet, build_set

API_VERSION = "openslo/v1"
SOURCE_TYPE = "infertrail"
ANNOTATION_ALERT_NAME = "infertrail.dev/alert-name"
ANNOTATION_PAGE = "infertrail.dev/page-receivers"
ANNOTATION_TICKET = "infertrail.dev/ticket-receivers"
_IGNORED_KINDS = frozenset({"Service"})  # descriptive only: nothing to evaluate


def is_openslo(doc: Any) -> bool:
    """True when ``doc`` looks like an OpenSLO object (it has an ``apiVersion: openslo/...``)."""
    return isinstance(doc, Mapping) and str(doc.get("apiVersion", "")).startswith("openslo/")


def parse_openslo(docs: Sequence[Any], *, source: str = "<openslo>") -> SLOSet:
    """Validate OpenSLO v1 documents into an SLOSet; SLOError names document and field."""
    problems: list[str] = []
    slis: dict[str, Mapping[str, Any]] = {}
    slos: list[tuple[str, Mapping[str, Any]]] = []
    for i, doc in enumerate(docs):
        where = f"document #{i + 1}"
        if not isinstance(doc, Mapping):
            problems.append(f"{where}: must be a mapping, got {type(doc).__name__}")
            continue
        if doc.get("apiVersion") != API_VERSION:
            problems.append(
                f"{where}: apiVersion must be {API_VERSION!r}, got {doc.get('apiVersion')!r}"
            )
            continue
        kind = doc.get("kind")
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, Mapping) else None
        if not isinstance(name, str) or not name:
            problems.append(f"{where} ({kind}): metadata.name is required")
            continue
        if kind == "SLI":
            slis[name] = doc
        elif kind == "SLO":
            slos.append((name, doc))
        elif kind not in _IGNORED_KINDS:
            problems.append(
                f"{kind} {name!r}: kind {kind!r} is not supported (SLO, SLI and Service are); "
                "burn-rate alerts follow the SRE workbook (docs/slo.md)"
            )
    if not slos and not problems:
        problems.append("no kind: SLO document found")
    bodies: list[tuple[str, dict[str, Any]]] = []
    renames: dict[str, str] = {}
    for name, doc in slos:
        body, names = _slo_body(name, doc, slis, problems)
        if body is not None:
            bodies.append((f"slo {name!r}", body))
            renames.update(names)
    if problems:
        raise SLOError(source, problems)
    return build_set(bodies, source=source, field_names=renames)


def _slo_body(
    name: str,
    doc: Mapping[str, Any],
    slis: Mapping[str, Mapping[str, Any]],
    problems: list[str],
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The native body of one SLO document, and native field -> OpenSLO path for messages."""
    where = f"slo {name!r}"
    before = len(problems)
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        problems.append(f"{where}: spec is required")
        return None, {}
    meta = doc["metadata"]
    for key in ("alertPolicies",):
        if spec.get(key):
            problems.append(
                f"{where}: spec.{key} is not supported; alerts follow the SRE workbook's "
                "multiwindow burn rates, routed by the infertrail.dev/*-receivers annotations"
            )
    method = spec.get("budgetingMethod", "Occurrences")
    if method != "Occurrences":
        problems.append(
            f"{where}: spec.budgetingMethod must be 'Occurrences' (events are counted), "
            f"got {method!r}"
        )
    sli_doc, sli_path = _indicator(where, spec, slis, problems)
    body: dict[str, Any] = {"name": name, "description": spec.get("description", "")}
    if "service" in spec:
        body["service"] = spec["service"]
    window = _window(where, spec.get("timeWindow"), problems)
    if window is not None:
        body["window"] = window
    objective = _objective(where, spec.get("objectives"), problems)
    if objective is not None:
        body["objective"] = objective
    labels = _labels(where, meta.get("labels"), problems)
    if labels:
        body["labels"] = labels
    alerting = _alerting(where, meta.get("annotations"), problems)
    if alerting:
        body["alerting"] = alerting
    good_path = f"{sli_path}.ratioMetric.good.metricSource.spec"
    if sli_doc is not None:
        sli = _ratio_sli(where, sli_doc, sli_path, problems)
        if sli is not None:
            model = sli.pop("model", None)
            if model is not None:
                body["model"] = model
            body["sli"] = sli
    if len(problems) > before:
        return None, {}
    return body, {
        "name": "metadata.name",
        "service": "spec.service",
        "objective": "spec.objectives[0].targetPercent",
        "window": "spec.timeWindow[0].duration",
        "labels": "metadata.labels",
        "model": f"{good_path}.model",
        "sli": good_path,
        "alerting": "metadata.annotations",
    }


def _indicator(
    where: str,
    spec: Mapping[str, Any],
    slis: Mapping[str, Mapping[str, Any]],
    problems: list[str],
) -> tuple[Mapping[str, Any] | None, str]:
    inline, ref = spec.get("indicator"), spec.get("indicatorRef")
    if (inline is None) == (ref is None):
        problems.append(f"{where}: exactly one of spec.indicator and spec.indicatorRef is required")
        return None, ""
    if inline is not None:
        if not isinstance(inline, Mapping) or not isinstance(inline.get("spec"), Mapping):
            problems.append(f"{where}: spec.indicator.spec must be a mapping")
            return None, ""
        return inline["spec"], "spec.indicator.spec"
    sli = slis.get(ref) if isinstance(ref, str) else None
    if sli is None or not isinstance(sli.get("spec"), Mapping):
        known = ", ".join(sorted(slis)) or "none"
        problems.append(f"{where}: spec.indicatorRef {ref!r} names no kind: SLI document ({known})")
        return None, ""
    return sli["spec"], f"SLI {ref!r} spec"


def _ratio_sli(
    where: str, sli: Mapping[str, Any], path: str, problems: list[str]
) -> dict[str, Any] | None:
    if "thresholdMetric" in sli:
        problems.append(
            f"{where}: {path}.thresholdMetric is not supported; use ratioMetric with good/total"
        )
        return None
    ratio = sli.get("ratioMetric")
    if not isinstance(ratio, Mapping):
        problems.append(f"{where}: {path}.ratioMetric is required")
        return None
    for unsupported in ("bad", "raw"):
        if unsupported in ratio:
            problems.append(
                f"{where}: {path}.ratioMetric.{unsupported} is not supported; "
                "give good and total (type: infertrail)"
            )
    before = len(problems)
    specs: dict[str, dict[str, Any]] = {}
    for part in ("good", "total"):
        at = f"{path}.ratioMetric.{part}.metricSource"
        holder = ratio.get(part)
        source = holder.get("metricSource") if isinstance(holder, Mapping) else None
        if not isinstance(source, Mapping):
            problems.append(f"{where}: {at} is required")
            continue
        if str(source.get("type", "")).lower() != SOURCE_TYPE:
            problems.append(
                f"{where}: {at}.type must be {SOURCE_TYPE!r} (infertrail counts its own "
                f"events), got {source.get('type')!r}"
            )
            continue
        body = source.get("spec")
        if not isinstance(body, Mapping):
            problems.append(f"{where}: {at}.spec must be a mapping with the SLI kind")
            continue
        specs[part] = dict(body)
    if len(problems) > before:
        return None
    good, total = specs["good"], specs["total"]
    for key in ("kind", "model"):
        if total.get(key, good.get(key)) != good.get(key):
            problems.append(
                f"{where}: {path}.ratioMetric.total.metricSource.spec.{key} must equal good's "
                f"({good.get(key)!r}), got {total.get(key)!r}"
            )
            return None
    extra = sorted(set(total) - {"kind", "model"})
    if extra:
        problems.append(
            f"{where}: {path}.ratioMetric.total.metricSource.spec.{extra[0]} is not a known "
            "field (total takes only kind and model: the SLI's parameters go on good)"
        )
        return None
    return good


def _window(where: str, raw: Any, problems: list[str]) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 1 or not isinstance(raw[0], Mapping):
        problems.append(f"{where}: spec.timeWindow must be a list of exactly one window")
        return None
    w = raw[0]
    if "calendar" in w or w.get("isRolling") is not True:
        problems.append(
            f"{where}: spec.timeWindow[0] must be rolling (isRolling: true); calendar windows "
            "are not supported"
        )
        return None
    duration = w.get("duration")
    if isinstance(duration, str) and duration[-1:] in ("M", "Q", "Y"):
        problems.append(
            f"{where}: spec.timeWindow[0].duration {duration!r}: months, quarters and years "
            "have no fixed length; use days or weeks (e.g. 28d, 4w)"
        )
        return None
    return str(duration)


def _objective(where: str, raw: Any, problems: list[str]) -> float | None:
    if not isinstance(raw, list) or len(raw) != 1 or not isinstance(raw[0], Mapping):
        problems.append(
            f"{where}: spec.objectives must be a list of exactly one objective "
            "(define one SLO per objective)"
        )
        return None
    obj = raw[0]
    for key in ("op", "value", "timeSliceTarget", "timeSliceWindow", "indicator", "indicatorRef"):
        if key in obj:
            problems.append(f"{where}: spec.objectives[0].{key} is not supported")
            return None
    target, percent = obj.get("target"), obj.get("targetPercent")
    if (target is None) == (percent is None):
        problems.append(f"{where}: spec.objectives[0] needs exactly one of target, targetPercent")
        return None
    if percent is not None:
        # Range errors are reported by the SLO model, under this field's name.
        if not isinstance(percent, int | float) or isinstance(percent, bool):
            problems.append(
                f"{where}: spec.objectives[0].targetPercent must be a number, got {percent!r}"
            )
            return None
        return float(percent)
    if not isinstance(target, int | float) or isinstance(target, bool) or not 0 < target < 1:
        problems.append(f"{where}: spec.objectives[0].target must be in (0, 1), got {target!r}")
        return None
    # Percent, rounded so that 0.999 gives exactly the 99.9 a native file would.
    return round(float(target) * 100, 10)


def _labels(where: str, raw: Any, problems: list[str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: metadata.labels must be a mapping")
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        # OpenSLO allows a list of values per label; a Prometheus label holds one string.
        if isinstance(value, list):
            out[str(key)] = ",".join(str(v) for v in value)
        else:
            out[str(key)] = str(value)
    return out


def _alerting(where: str, raw: Any, problems: list[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: metadata.annotations must be a mapping")
        return {}
    out: dict[str, Any] = {}
    if ANNOTATION_ALERT_NAME in raw:
        out["name"] = raw[ANNOTATION_ALERT_NAME]
    for key, alert in ((ANNOTATION_PAGE, "page_alert"), (ANNOTATION_TICKET, "ticket_alert")):
        if key in raw:
            names = [n.strip() for n in str(raw[key]).split(",") if n.strip()]
            out[alert] = {"receivers": names}
    return out
