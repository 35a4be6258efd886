"""The ``infertrail`` command: a thin skin over the same functions the service uses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from infertrail.commandline import CliContext

pass_ctx = click.make_pass_decorator(CliContext)


@click.group()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Root of all local state (default: $INFERTRAIL_DATA_DIR or ./.infertrail).",
)
@click.version_option(package_name="infertrail")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """infertrail: observability and a tamper-evident audit trail for AI inference."""
    ctx.obj = CliContext({"data_dir": data_dir})


@main.command()
@click.argument("model", type=click.Choice(["sentiment", "credit", "digits", "all"]), default="all")
@pass_ctx
def train(ctx: CliContext, model: str) -> None:
    """Train demo models deterministically and save each with its sha256."""
    from infertrail.models import TRAINERS

    s = ctx.settings
    s.ensure_dirs()
    for name, trainer in TRAINERS.items():
        if model in (name, "all"):
            info = trainer(s.models_dir)
            click.echo(
                f"trained {info.name} {info.version} sha256={info.sha256} -> {s.models_dir / name}"
            )


@main.command()
@click.option("--host", help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default 8000).")
@pass_ctx
def serve(ctx: CliContext, host: str | None, port: int | None) -> None:
    """Serve the demo models over HTTP (OpenAPI docs at /docs)."""
    import uvicorn

    from infertrail.models.artifacts import ModelArtifactError
    from infertrail.server.app import build_services, create_app

    s = ctx.settings
    try:
        services = build_services(s)
    except ModelArtifactError as exc:
        raise click.ClickException(str(exc)) from exc
    app = create_app(services, freeze_gc=True)
    try:
        uvicorn.run(app, host=host or s.host, port=port or s.port, log_level="warning")
    finally:
        services.close()


@main.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_ctx
def trace(ctx: CliContext, request_id: str, as_json: bool) -> None:
    """Show the span tree, log lines and metric exemplars of one request."""
    from dataclasses import asdict

    from infertrail.telemetry.readback import find_request, format_request

    view = find_request(ctx.settings.telemetry_dir, request_id)
    if view is None:
        raise click.ClickException(
            f"no span with request id {request_id!r} in {ctx.settings.telemetry_dir}"
            " (spans are exported about once a second; is this the right --data-dir?)"
        )
    if as_json:
        click.echo(json.dumps(asdict(view), indent=2))
    else:
        click.echo(format_request(view))


@main.command()
@click.option("--requests", "n_requests", type=click.IntRange(1, 100_000), default=300)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0 picks a free port.")
@click.option("--keep-serving", is_flag=True, help="Keep the service up after the traffic.")
@pass_ctx
def demo(ctx: CliContext, n_requests: int, port: int, keep_serving: bool) -> None:
    """Train, serve on localhost, drive traffic, and show where the telemetry went."""
    from infertrail.demo.run import run_demo

    sys.exit(run_demo(ctx.settings, n_requests=n_requests, port=port, keep_serving=keep_serving))


def _register_groups() -> None:
    """Command groups that live beside the features they drive."""
    from infertrail.alerting.cli import export
    from infertrail.audit.cli import audit, keys
    from infertrail.compliance.cli import export as audit_export
    from infertrail.compliance.cli import query, users
    from infertrail.cost.cli import cost
    from infertrail.demo.simulate import simulate
    from infertrail.drift.cli import drift_commands
    from infertrail.models import PROFILE_BUILDERS
    from infertrail.outcomes.cli import outcomes
    from infertrail.privacy.cli import privacy
    from infertrail.slo.cli import slo, slo_rules

    drift = drift_commands(PROFILE_BUILDERS)
    export.add_command(slo_rules)
    audit.add_command(query)
    audit.add_command(audit_export)
    for group in (audit, keys, export, privacy, drift, simulate, slo, cost, outcomes, users):
        main.add_command(group)


_register_groups()
