"""The SLOs' burn-rate alerts as rules of the one alert engine (the drift rules' engine).

Each SLO gets two rules, ``<AlertName>-page`` and ``<AlertName>-ticket``, on the signals
``slo.<name>.burn.page`` and ``slo.<name>.burn.ticket`` that the evaluator computes: the burn
rate as a multiple of the alert's threshold (the lesser of a pair's two windows, the greater of
the pairs), so ``> 1`` is exactly the workbook's condition. They fire at the first evaluation
that meets it and resolve at the first that does not, like the exported Prometheus alerts
(which have no ``for:``). Their labels are Sloth's (``sloth_id``, ``sloth_service``,
``sloth_slo``, ``sloth_severity``) plus the SLO's own.
"""

from __future__ import annotations

from collections.abc import Iterable

from infertrail.alerting.rules import AlertRule, RuleSet, Severity
from infertrail.slo.burnrate import SEVERITIES, AlertSeverity
from infertrail.slo.definitions import SLO, AlertSpec, SLOError, SLOSet

DEFAULT_SEVERITY: dict[AlertSeverity, Severity] = {"page": "critical", "ticket": "warning"}


def burn_signal(slo: SLO, severity: AlertSeverity) -> str:
    """The signal key of one of the SLO's burn-rate alerts."""
    return f"slo.{slo.signal_key}.burn.{severity}"


def alert_spec(slo: SLO, severity: AlertSeverity) -> AlertSpec:
    """The page or ticket alert settings of ``slo``."""
    return slo.alerting.page_alert if severity == "page" else slo.alerting.ticket_alert


def alert_labels(slo: SLO, severity: AlertSeverity) -> dict[str, str]:
    """Sloth's identifying labels, then the SLO's, the alerting's and the alert's own."""
    return {
        "sloth_id": slo.slo_id,
        "sloth_service": slo.service,
        "sloth_slo": slo.name,
        "sloth_severity": severity,
        **slo.labels,
        **slo.alerting.labels,
        **alert_spec(slo, severity).labels,
    }


def alert_severity(slo: SLO, severity: AlertSeverity) -> Severity:
    """The engine severity of the page (default critical) or ticket (warning) alert."""
    return alert_spec(slo, severity).severity or DEFAULT_SEVERITY[severity]


def slo_alert_rules(slos: SLOSet | Iterable[SLO]) -> list[AlertRule]:
    """Engine rules for every enabled page and ticket alert of ``slos``."""
    out: list[AlertRule] = []
    for slo in slos.slos if isinstance(slos, SLOSet) else slos:
        for sev in SEVERITIES:
            spec = alert_spec(slo, sev)
            if spec.disable:
                continue
            # The definitions' annotations are plain text; the engine's are templates.
            annotations = {
                k: _literal(v) for k, v in {**slo.alerting.annotations, **spec.annotations}.items()
            }
            summary = (
                f"{{rule}} {{status}}: SLO {slo.name} of {slo.service} burns its error budget "
                f"at {{value:.3g}}x the {sev} threshold (model {{model}})"
            )
            out.append(
                AlertRule(
                    name=f"{slo.alert_name}-{sev}",
                    signal=burn_signal(slo, sev),
                    model=slo.model,
                    comparison=">",
                    threshold=1.0,
                    for_windows=1,
                    resolve_after=1,
                    severity=alert_severity(slo, sev),
                    labels=alert_labels(slo, sev),
                    annotations={"summary": summary, **annotations},
                    receivers=spec.receivers,
                )
            )
    return out


def with_slo_rules(rules: RuleSet | None, slos: SLOSet) -> RuleSet:
    """``rules`` plus the SLOs' alert rules: one rule set for one engine.

    The SLOs' receivers must be defined in ``rules``; SLOError names the SLO, alert and
    receiver otherwise, or a rule name the SLO alerts would take twice.
    """
    base = rules or RuleSet(rules=())
    problems: list[str] = []
    for slo in slos.slos:
        for sev in SEVERITIES:
            for name in alert_spec(slo, sev).receivers:
                if name not in base.receivers:
                    known = ", ".join(sorted(base.receivers)) or "none defined"
                    problems.append(
                        f"slo {slo.name!r}: alerting.{sev}_alert.receivers: unknown receiver "
                        f"{name!r} (receivers of the alert rules file: {known})"
                    )
    generated = slo_alert_rules(slos)
    taken = {r.name for r in base.rules}
    for r in generated:
        if r.name in taken:
            problems.append(
                f"slo {r.labels['sloth_slo']!r}: alert rule {r.name!r} is taken (by the alert "
                "rules file or another SLO); set alerting.name"
            )
        taken.add(r.name)
    if problems:
        raise SLOError(slos.source, problems)
    return RuleSet(rules=(*base.rules, *generated), receivers=base.receivers)


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")
