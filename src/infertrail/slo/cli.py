"""``infertrail export slo-rules`` and ``infertrail slo ...``: thin skins over the SLO layer.

Two click objects for the main command to add: ``slo_rules`` under the ``export`` group
(``export.add_command(slo_rules)``) and the ``slo`` group (``main.add_command(slo)``).
``slo status`` evaluates the SLOs now from the counts the service saves (``--counts``, default
``<data_dir>/slo/counts.json``), so it shows what the in-process evaluator sees without asking
the service. ``slo reference`` prints a model's reference confidences (mean, percentiles,
low-confidence rate) as the business signals compare them, e.g. for a rule's PromQL.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from infertrail.alerting.cli import write_output
from infertrail.commandline import settings_of
from infertrail.config import Settings
from infertrail.slo.burnrate import RATIO_WINDOWS_S, SEVERITIES, SLOStatus, evaluate_slo
from infertrail.slo.business import ConfidenceReference, quantile_key
from infertrail.slo.definitions import SLOError, SLOSet, format_duration, load_slos
from infertrail.slo.export import prometheus_slo_rules
from infertrail.slo.sli import DEFAULT_BUCKET_S, SLICounter
from infertrail.slo.store import CountsFileError, load_counts, read_counts

COUNTS_FILE = Path("slo") / "counts.json"

_SLOS = click.option(
    "--slos",
    "slos_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="SLO definitions: native (.toml/.yaml) or OpenSLO v1 (.yaml).",
)


def default_counts_path(settings: Settings) -> Path:
    """Where the service saves its SLO counts: ``<data_dir>/slo/counts.json``."""
    return settings.data_dir / COUNTS_FILE


def _load(path: Path) -> SLOSet:
    try:
        return load_slos(path)
    except SLOError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("slo-rules")
@_SLOS
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=Path("-"),
    show_default=True,
    help="Where to write; - for standard output.",
)
def slo_rules(slos_path: Path, out_path: Path) -> None:
    """Write the SLOs' Prometheus recording and alerting rules (Sloth's shape)."""
    write_output(out_path, prometheus_slo_rules(_load(slos_path), source=slos_path.name))


@click.group("slo")
def slo() -> None:
    """Service level objectives: error budgets and burn-rate alerts."""


@slo.command("status")
@_SLOS
@click.option(
    "--counts",
    "counts_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Saved SLO counts (default <data_dir>/slo/counts.json).",
)
@click.option("--at", "at_text", help="Evaluate at this RFC 3339 time instead of now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def status(
    ctx: click.Context,
    slos_path: Path,
    counts_path: Path | None,
    at_text: str | None,
    as_json: bool,
) -> None:
    """Error budget remaining, burn rates and alert conditions of every SLO, now."""
    slos = _load(slos_path)
    path = counts_path or default_counts_path(settings_of(ctx))
    try:
        doc = read_counts(path)
    except CountsFileError as exc:
        raise click.ClickException(str(exc)) from None
    if doc is None:
        raise click.ClickException(
            f"no SLO counts at {path}: the service saves them once a minute while it runs "
            "with SLOs (or pass --counts)"
        )
    bucket_s = doc.get("bucket_s", DEFAULT_BUCKET_S)
    try:
        counter = SLICounter(slos.slos, bucket_s=bucket_s)
        load_counts(counter, path)
    except (CountsFileError, ValueError) as exc:
        raise click.ClickException(f"SLO counts {path}: {exc}") from None
    at = _parse_at(at_text)
    with counter.locked():
        statuses = [evaluate_slo(s, counter.counts(s.name), at) for s in slos.slos]
    if as_json:
        click.echo(json.dumps([st.to_json() for st in statuses], indent=2))
    else:
        click.echo(format_status(statuses))


@slo.command("reference")
@click.option("--model", "model_name", required=True, help="Model whose saved profile to read.")
@click.option(
    "--profile",
    "profile_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Profile file (default: the model's, under <data_dir>/models).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def reference(
    ctx: click.Context, model_name: str, profile_file: Path | None, as_json: bool
) -> None:
    """The reference confidences of a model's profile, as the business signals compare them."""
    from infertrail.drift import ProfileError, load_profile, profile_path

    path = profile_file or profile_path(settings_of(ctx).models_dir, model_name)
    try:
        ref = ConfidenceReference.from_profile(load_profile(path))
    except (ProfileError, OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    body = {
        "model": model_name,
        "confidence_mean": ref.mean,
        **{f"confidence_{quantile_key(q)}": v for q, v in ref.quantiles.items()},
        "low_confidence_rate": ref.low_confidence_rate,
    }
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(
            "\n".join(
                f"{k:<22} {v:.6g}" if isinstance(v, float) else f"{k:<22} {v}"
                for k, v in body.items()
            )
        )


def _parse_at(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an RFC 3339 time: {text!r}", param_hint="--at") from None
    if when.tzinfo is None:
        raise click.BadParameter(f"needs a time zone (e.g. Z): {text!r}", param_hint="--at")
    return when.timestamp()


def format_status(statuses: list[SLOStatus]) -> str:
    """A plain-text table: one block per SLO."""
    lines = []
    for st in statuses:
        s = st.slo
        when = datetime.fromtimestamp(st.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(
            f"{s.name} ({s.service}, model {s.model}, {s.sli.kind}): objective {s.objective:g}% "
            f"over {s.window}, at {when}"
        )
        lines.append(
            f"  error budget remaining {_pct(st.budget_remaining)} "
            f"({st.period.bad} bad of {st.period.total} events)"
        )
        rates = "  ".join(f"{format_duration(w)} {_rate(st.burn_rate(w))}" for w in RATIO_WINDOWS_S)
        lines.append(f"  burn rate  {rates}")
        alerts = ", ".join(f"{sev} {'FIRING' if st.firing[sev] else 'ok'}" for sev in SEVERITIES)
        lines.append(f"  alerts     {alerts}")
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _rate(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}x"
