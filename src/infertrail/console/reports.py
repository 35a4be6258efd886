"""Reports as files: drift, performance, SLOs and the compliance evidence pack, in HTML or PDF.

Each report is built offline from the data directory (the service need not run) into one
JSON-ready dict, then rendered by ``templates/report_<kind>.html`` into one self-contained HTML
file: the stylesheet inlined, charts as inline SVG (:mod:`infertrail.console.svg`), no link to
anything outside the file, so it can be mailed, archived and opened years later. A PDF is the
same HTML printed by headless Chromium.

Where each report's numbers come from (docs/console.md, "Reports"):

- drift: drift reports are judged in the service and never persisted, and neither the audit
  records (an HMAC of the input) nor the outcome store keep feature values; so the report
  re-judges what is kept, the model's *predictions* (label mix and confidence, from the outcome
  store's prediction index) in consecutive windows of ``drift_window_size`` against the model's
  reference profile with :class:`~infertrail.drift.DriftDetector`; feature verdicts are missing;
- performance: the outcome store, through the same report ``infertrail outcomes report`` prints;
- SLOs: the saved SLO counts evaluated at steps across the period (``slo_file`` names the SLOs);
- compliance: the audit lake through the compliance query service as a named user, so the
  report itself is recorded as an ``access_query`` (the self-audit).
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from infertrail.compliance.queries import Caller, QueryService, RecordsQuery
from infertrail.config import Settings
from infertrail.console.formats import MISSING, environment, pct
from infertrail.console.svg import Series, bar_chart, line_chart
from infertrail.models.reason_codes import REASON_CODES_VERSION, reason_table

__all__ = [
    "ADVERSE_DECISIONS",
    "KINDS",
    "Period",
    "ReportError",
    "compliance_report",
    "drift_report",
    "find_chromium",
    "performance_report",
    "print_pdf",
    "render_html",
    "slo_report",
]

KINDS = ("drift", "performance", "slo", "compliance")
#: Decisions that are adverse actions under Reg B (12 CFR 1002.2(c)): a refer is not an action
#: taken yet (a person decides), so it gets no notice until that person declines.
ADVERSE_DECISIONS = frozenset({"decline"})
#: EU AI Act Art. 19(1) / 26(6): automatically generated logs kept at least six months.
_AIA_MIN_DAYS = 183
_SLO_STEPS = 48  # evaluation points across the period for the SLO charts
_PDF_TIMEOUT_S = 180.0


class ReportError(ValueError):
    """A report cannot be made as asked (bad period, unknown model, missing data); says why."""


@dataclass(frozen=True)
class Period:
    """The report's period [start, end), UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name, t in (("from", self.start), ("to", self.end)):
            if t.tzinfo is None:
                raise ReportError(f"--{name} {t.isoformat()} has no UTC offset; add Z or +hh:mm")
        if self.end <= self.start:
            raise ReportError(
                f"--from {_iso(self.start)} is not before --to {_iso(self.end)} "
                "(the period is [from, to))"
            )

    @property
    def start_ns(self) -> int:
        return int(self.start.timestamp()) * 1_000_000_000 + self.start.microsecond * 1000

    @property
    def end_ns(self) -> int:
        return int(self.end.timestamp()) * 1_000_000_000 + self.end.microsecond * 1000

    def to_dict(self) -> dict[str, str]:
        return {"from": _iso(self.start), "to": _iso(self.end)}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(value: float | None) -> float | None:
    """The value, or None where it is missing or not a number (shown as a dash, never 0)."""
    return None if value is None or not math.isfinite(value) else float(value)


def _head(kind: str, title: str, period: Period, settings: Settings) -> dict[str, Any]:
    return {
        "kind": kind,
        "title": title,
        "period": period.to_dict(),
        "service": settings.service_name,
        "generated_at": _iso(datetime.now(UTC)),
        "data_dir": str(settings.data_dir),
    }


# ---- drift -----------------------------------------------------------------------------------


def _served_models(settings: Settings) -> dict[str, dict[str, Any]]:
    """Model name -> its card (name, version, sha256) for every model under ``models_dir``."""
    from infertrail.models.artifacts import CARD_FILE

    found: dict[str, dict[str, Any]] = {}
    root = settings.models_dir
    for card in sorted(root.glob(f"*/{CARD_FILE}")) if root.is_dir() else []:
        try:
            meta = json.loads(card.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("version"), str):
            found[card.parent.name] = meta
    return found


def _pick_models(settings: Settings, model: str | None) -> dict[str, dict[str, Any]]:
    served = _served_models(settings)
    if model is None:
        return served
    if model not in served:
        known = ", ".join(sorted(served)) or "none"
        raise ReportError(
            f"--model {model!r} is unknown under {settings.models_dir}; known: {known}"
        )
    return {model: served[model]}


def drift_report(settings: Settings, period: Period, model: str | None = None) -> dict[str, Any]:
    """Prediction drift per window of each model's current version against its profile."""
    from infertrail.drift import DriftDetector, DriftWindow, ProfileError, load_profile
    from infertrail.drift import profile_path as drift_profile_path
    from infertrail.outcomes.store import OutcomeStore, outcomes_db_path

    cards = _pick_models(settings, model)
    db = outcomes_db_path(settings)
    if not db.exists():
        raise ReportError(f"no prediction index at {db}: the service writes it (outcomes_enabled)")
    size = settings.drift_window_size
    models = []
    store = OutcomeStore(db)
    try:
        for name, card in cards.items():
            path = drift_profile_path(settings.models_dir, name)
            if not path.is_file():
                models.append({"model": name, "version": card["version"], "windows": [],
                               "note": f"no reference profile at {path}"})  # fmt: skip
                continue
            try:
                profile = load_profile(path)
            except (ProfileError, OSError) as exc:
                raise ReportError(f"model {name!r}: {exc}") from exc
            detector = DriftDetector(profile)
            preds = store.scored_predictions(
                model=name,
                version=card["version"],
                kind="label",
                start_ns=period.start_ns,
                end_ns=period.end_ns,
            )
            windows = []
            for lo in range(0, len(preds), size):
                hi = min(lo + size, len(preds))
                labels = np.array([profile.label_code(x) for x in preds.label[lo:hi]], np.int64)
                conf = np.array([math.nan if c is None else c for c in preds.confidence[lo:hi]])
                rows = np.full((hi - lo, len(profile.columns)), math.nan)
                report = detector.compare(
                    DriftWindow(
                        rows,
                        labels=labels,
                        confidences=conf,
                        started_at=preds.ts_ns[lo] / 1e9,
                        closed_at=preds.ts_ns[hi - 1] / 1e9,
                    )
                )
                windows.append(_drift_window(report, hi - lo))
            models.append(
                {"model": name, "version": card["version"], "n_predictions": len(preds),
                 "windows": windows, "note": None}
            )  # fmt: skip
    finally:
        store.close()
    data = _head("drift", "Drift report", period, settings)
    data.update(window_size=size, models=models)
    return data


def _verdict(f: Any) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "method": f.method,
        "statistic": _finite(f.statistic),
        "p_value": _finite(f.p_value),
        "distance": _finite(f.distance),
        "threshold": _finite(f.threshold),
        "drifted": bool(f.drifted),
    }


def _drift_window(report: Any, n: int) -> dict[str, Any]:
    p = report.prediction
    return {
        "started_at": report.started_at,
        "closed_at": report.closed_at,
        "n": n,
        "label": _verdict(p.label),
        "confidence": _verdict(p.confidence),
        "label_shares": p.label_shares,
        "confidence_mean": _finite(p.confidence_mean),
        "low_confidence_rate": _finite(p.low_confidence_rate),
        "features": None,  # not kept offline: see the module doc
    }


# ---- performance -----------------------------------------------------------------------------


def performance_report(
    settings: Settings, period: Period, model: str | None = None
) -> dict[str, Any]:
    """Realized performance per model version over the period and per day (or hour) in it."""
    from infertrail.outcomes.join import performance_report as outcomes_report
    from infertrail.outcomes.join import spec_from_settings
    from infertrail.outcomes.render import report_as_dict
    from infertrail.outcomes.store import OutcomeStore, outcomes_db_path

    if model is not None:
        _pick_models(settings, model)
    db = outcomes_db_path(settings)
    if not db.exists():
        raise ReportError(f"no outcomes at {db}: ingest some with `infertrail outcomes ingest`")
    span = period.end - period.start
    every = 3600 if span <= timedelta(days=3) else 86400
    spec = spec_from_settings(settings)
    store = OutcomeStore(db)
    try:
        common: dict[str, Any] = {
            "model": model, "start_ns": period.start_ns, "end_ns": period.end_ns,
        }  # fmt: skip
        total = report_as_dict(outcomes_report(store, spec, **common))
        series = report_as_dict(outcomes_report(store, spec, every_s=every, **common))
    finally:
        store.close()
    data = _head("performance", "Performance report", period, settings)
    data.update(model=model, every_s=every, groups=total["groups"], series=series["groups"])
    return data


# ---- SLOs ------------------------------------------------------------------------------------


def slo_report(settings: Settings, period: Period, model: str | None = None) -> dict[str, Any]:
    """Budget remaining and burn rates of every SLO at steps across the period."""
    from infertrail.slo.burnrate import RATIO_WINDOWS_S, SEVERITIES, evaluate_slo
    from infertrail.slo.definitions import SLOError, format_duration, load_slos
    from infertrail.slo.sli import DEFAULT_BUCKET_S, SLICounter
    from infertrail.slo.store import CountsFileError, load_counts, read_counts

    if model is not None:
        _pick_models(settings, model)
    if settings.slo_file is None:
        raise ReportError("no SLOs: set slo_file (INFERTRAIL_SLO_FILE) to the SLO definitions")
    try:
        slos = load_slos(settings.slo_file)
    except SLOError as exc:
        raise ReportError(str(exc)) from None
    chosen = [s for s in slos.slos if model is None or s.model in (model, "*")]
    if model is not None and not chosen:
        raise ReportError(f"--model {model!r}: no SLO in {settings.slo_file} is about it")
    path = settings.slo_counts_path
    try:
        doc = read_counts(path)
        if doc is None:
            raise ReportError(f"no SLO counts at {path}: the service saves them while it runs")
        counter = SLICounter(slos.slos, bucket_s=doc.get("bucket_s", DEFAULT_BUCKET_S))
        load_counts(counter, path)
    except (CountsFileError, ValueError) as exc:
        raise ReportError(f"SLO counts {path}: {exc}") from None
    t0, t1 = period.start.timestamp(), period.end.timestamp()
    steps = [t0 + (t1 - t0) * (i + 1) / _SLO_STEPS for i in range(_SLO_STEPS)]
    out = []
    with counter.locked():
        for s in chosen:
            statuses = [evaluate_slo(s, counter.counts(s.name), at) for at in steps]
            last = statuses[-1]
            out.append(
                {
                    "name": s.name,
                    "service": s.service,
                    "model": s.model,
                    "sli": s.sli.kind,
                    "objective": s.objective,
                    "window": s.window,
                    "budget_remaining": last.budget_remaining if last.period.total else None,
                    "bad": last.period.bad,
                    "total": last.period.total,
                    "burn_rates": {
                        format_duration(w): _finite(last.burn_rate(w)) for w in RATIO_WINDOWS_S
                    },
                    "firing": {sev: last.firing[sev] for sev in SEVERITIES},
                    "budget_series": [
                        [st.at, st.budget_remaining if st.period.total else None] for st in statuses
                    ],
                    "burn_series": {
                        format_duration(w): [[st.at, _finite(st.burn_rate(w))] for st in statuses]
                        for w in (RATIO_WINDOWS_S[0], RATIO_WINDOWS_S[-1])
                    },
                }
            )
    data = _head("slo", "SLO report", period, settings)
    data.update(slo_file=str(settings.slo_file), slos=out)
    return data


# ---- compliance ------------------------------------------------------------------------------


def _reason_texts() -> dict[str, str]:
    return {r.code: r.text for r in reason_table().values()}


def compliance_report(
    service: QueryService,
    caller: Caller,
    settings: Settings,
    period: Period,
    *,
    verifier_key: str,
    model: str | None = None,
    subject_id: str | None = None,
    justification: str | None = None,
    max_records: int = 2000,
) -> dict[str, Any]:
    """The evidence pack: every record in scope with its inclusion proof and the checkpoint,
    the subject access report (with ``subject_id``), Reg B notices, the Art. 12/19 extract.

    One export through the query service: its ``access_query`` record (who, why, how many) is
    durable before any row is read. More than ``max_records`` matches is refused rather than
    truncated: an evidence pack that silently leaves records out would mislead.
    """
    if model is not None:
        _pick_models(settings, model)
    q = RecordsQuery(
        start=_iso(period.start),
        end=_iso(period.end),
        subject_id=subject_id,
        model_name=model,
        # About a subject: everything (decisions, who looked, erasure); else the decisions.
        event_type=None if subject_id is not None else "inference",
        justification=justification,
    )
    export = service.export(caller, q, proofs=True)
    if export.count > max_records:
        raise ReportError(
            f"{export.count} records match, more than the report's limit of {max_records}: "
            "narrow the period, give --model or --subject, or raise --max-records"
        )
    rows = [row for batch in export.batches for row in batch]
    checkpoint = export.checkpoint
    reasons = _reason_texts()
    records = []
    for row in rows:
        record = json.loads(row.canonical)
        evidence = json.dumps(row.evidence(checkpoint), indent=2, ensure_ascii=False) + "\n"
        records.append(
            {
                "seq": row.seq,
                "record": record,
                "leaf_hash": row.leaf_hash.hex(),
                "evidence": evidence,
                "evidence_href": "data:application/json;base64,"
                + base64.b64encode(evidence.encode()).decode(),
                "retained_days": _retained_days(record),
            }
        )
    decisions = [r for r in records if r["record"].get("event_type") == "inference"]
    data = _head("compliance", "Compliance evidence pack", period, settings)
    data.update(
        model=model,
        actor={"name": caller.user.name, "role": caller.user.role},
        access_seq=export.access_seq,
        justification=justification,
        checkpoint={**checkpoint.to_dict(), "verifier_key": verifier_key},
        count=len(records),
        records=records,
        n_decisions=len(decisions),
        notices=_adverse_notices(decisions, reasons),
        subject=_subject_access(export.subject, records, decisions, settings)
        if subject_id is not None
        else None,
        aia_min_days=_AIA_MIN_DAYS,
    )
    return data


def _retained_days(record: Mapping[str, Any]) -> int | None:
    try:
        ts = datetime.strptime(record["ts"][:10], "%Y-%m-%d").date()
        until = date.fromisoformat(record["retention_until"])
    except (KeyError, TypeError, ValueError):
        return None
    return (until - ts).days


def _adverse_notices(
    decisions: Iterable[Mapping[str, Any]], reasons: Mapping[str, str]
) -> list[dict[str, Any]]:
    """A Reg B adverse-action notice (12 CFR 1002.9(a)(2), (b)(2)) per declined application."""
    out = []
    for item in decisions:
        record = item["record"]
        if record.get("decision") not in ADVERSE_DECISIONS:
            continue
        explanation = record.get("explanation") or {}
        version = explanation.get("reason_codes_version")
        known = version == REASON_CODES_VERSION
        out.append(
            {
                "seq": item["seq"],
                "ts": record.get("ts"),
                "subject": record.get("subject"),
                "model": f"{record.get('model_name')} {record.get('model_version')}",
                "decision": record.get("decision"),
                "reasons_version": version,
                "reasons": [
                    {"code": code, "text": reasons.get(code) if known else None}
                    for code in explanation.get("reason_codes") or []
                ],
            }
        )
    return out


def _subject_access(
    notice: Any,
    records: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    settings: Settings,
) -> dict[str, Any]:
    """GDPR Art. 15: what is held on the subject, why, who saw it, how long it is kept."""
    kinds = Counter(r["record"].get("event_type") for r in records)
    looked = [r["record"] for r in records if r["record"].get("event_type") == "access_query"]
    viewers = Counter(
        (a.get("id"), a.get("role"), a.get("channel"))
        for rec in looked
        if isinstance(a := rec.get("actor"), dict)
    )
    until = [r["record"].get("retention_until") for r in records]
    classes = sorted({str(r["record"].get("retention_class")) for r in records})
    models = sorted({f"{d['record'].get('model_name')} {d['record'].get('model_version')}"
                     for d in decisions})  # fmt: skip
    modes = Counter(str(d["record"].get("decision_mode")) for d in decisions)
    return {
        "status": notice.status if notice is not None else "unknown",
        "erasure": notice.to_dict()["erasure"] if notice is not None else None,
        "pseudonyms": sorted({str(r["record"].get("subject")) for r in records}),
        "record_kinds": dict(kinds),
        "models": models,
        "decision_modes": dict(modes),
        "recipients": [
            {"id": i, "role": role, "channel": ch, "times": n}
            for (i, role, ch), n in sorted(viewers.items(), key=lambda kv: str(kv[0]))
        ],
        "retention_classes": classes,
        "retention_until": max((u for u in until if u), default=None),
        "raw_payloads": settings.raw_payloads_enabled,
        "raw_payloads_days": settings.raw_payloads_retention_days,
    }


# ---- rendering -------------------------------------------------------------------------------


def _when(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _charts(data: Mapping[str, Any]) -> dict[str, Markup]:
    """The report's inline SVG charts, keyed by where the template puts them."""
    kind = data["kind"]
    x_range = (_when(data["period"]["from"]) or 0.0, _when(data["period"]["to"]) or 1.0)
    charts: dict[str, Markup] = {}
    if kind == "drift":
        for m in data["models"]:
            pts = [(w["closed_at"], w["confidence_mean"]) for w in m["windows"]]
            dist = [(w["closed_at"], (w["label"] or {}).get("distance")) for w in m["windows"]]
            charts[m["model"]] = line_chart(
                [Series("mean confidence", pts), Series("label-mix distance", dist)],
                y_label="value",
                title=f"{m['model']}: prediction drift per window",
                x_range=x_range,
            )
    elif kind == "performance":
        by_model: dict[str, list[tuple[float, float | None]]] = {}
        for g in data["series"]:
            key = f"{g['model']} {g['version']}"
            by_model.setdefault(key, []).append((_when(g["window_start"]) or 0.0, g["accuracy"]))
        charts["accuracy"] = line_chart(
            [Series(k, v) for k, v in by_model.items()],
            y_label="accuracy",
            title="Accuracy over time",
            x_range=x_range,
            fmt=pct,
        )
    elif kind == "slo":
        for s in data["slos"]:
            charts[s["name"]] = line_chart(
                [Series("budget remaining", [tuple(p) for p in s["budget_series"]])],
                y_label="error budget remaining",
                title=f"{s['name']}: error budget remaining",
                x_range=x_range,
                y_min=None,
                fmt=pct,
            )
    elif kind == "compliance":
        counts = Counter(str(r["record"].get("decision")) for r in data["records"]
                         if r["record"].get("event_type") == "inference")  # fmt: skip
        charts["decisions"] = bar_chart(
            sorted(counts.items()), y_label="decisions", title="Decisions in scope"
        )
    return charts


def render_html(data: Mapping[str, Any], *, for_print: bool = False) -> str:
    """The report as one self-contained HTML document (``for_print``: proofs shown open)."""
    css = resources.files("infertrail.console").joinpath("static/console.css").read_text("utf-8")
    template = environment().get_template(f"report_{data['kind']}.html")
    return template.render(
        r=data,
        css=Markup(css),  # noqa: S704 (the package's own stylesheet)
        charts=_charts(data),
        for_print=for_print,
        missing=MISSING,
    )


# ---- PDF -------------------------------------------------------------------------------------

_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(which: Callable[[str], str | None] = shutil.which) -> str:
    """The path of a Chromium (or Chrome) executable; ReportError saying how to install one."""
    for name in _CHROMIUM_NAMES:
        found = which(name)
        if found:
            return found
    raise ReportError(
        "a PDF is printed by headless Chromium, which is not installed (none of "
        f"{', '.join(_CHROMIUM_NAMES)} is on PATH): on Debian or Ubuntu, "
        "`apt-get install --no-install-recommends chromium`; or use --format html"
    )


def print_pdf(html: str, out: Path, *, chromium: str | None = None) -> None:
    """Print ``html`` to ``out`` with headless Chromium (its own throwaway profile)."""
    exe = chromium or find_chromium()
    with tempfile.TemporaryDirectory(prefix="infertrail-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        target = Path(tmp) / "report.pdf"
        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp}/profile",
            f"--print-to-pdf={target}", page.as_uri(),
        ]  # fmt: skip
        try:
            done = subprocess.run(args, capture_output=True, timeout=_PDF_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ReportError(f"Chromium did not print within {_PDF_TIMEOUT_S:g} s") from None
        if done.returncode != 0 or not target.is_file():
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise ReportError(
                f"Chromium ({exe}) failed to print (exit {done.returncode}): {' | '.join(tail)}"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(target), out)
