"""The ``infertrail`` command: a thin skin over the same functions the service uses.

Command groups live beside the features they drive and are imported only when run, so that
``infertrail --help`` (and every command) starts without importing what it does not use: the
table below carries each group's one-line help for the listing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

import click

from infertrail.commandline import CliContext, UsageProblem
from infertrail.runtime.extras import extra_for

if TYPE_CHECKING:
    from infertrail.events import ModelInfo

pass_ctx = click.make_pass_decorator(CliContext)


@contextmanager
def _needs_extra(what: str, *, extra: str | None = None) -> Iterator[None]:
    """Turn a missing optional dependency into a usage error naming the extra to install."""
    try:
        yield
    except ModuleNotFoundError as exc:
        needed = extra or extra_for(exc)
        if needed is None:
            raise
        raise UsageProblem(
            f"{what} needs infertrail[{needed}] ({exc.name} is not installed): "
            f"pip install 'infertrail[{needed}]'"
        ) from exc


def _attr(spec: str) -> click.Command:
    module, _, name = spec.partition(":")
    command = getattr(import_module(module), name)
    assert isinstance(command, click.Command), spec
    return command


def _audit() -> click.Command:
    group = _attr("infertrail.audit.cli:audit")
    assert isinstance(group, click.Group)
    group.add_command(_attr("infertrail.compliance.cli:query"))
    group.add_command(_attr("infertrail.compliance.cli:export"))
    group.add_command(_attr("infertrail.runtime.logwatch:monitor"))  # audit + alerting
    return group


def _export() -> click.Command:
    group = _attr("infertrail.alerting.cli:export")
    assert isinstance(group, click.Group)
    group.add_command(_attr("infertrail.slo.cli:slo_rules"))
    return group


def _drift() -> click.Command:
    from infertrail.drift.cli import drift_commands
    from infertrail.models import PROFILE_BUILDERS

    return drift_commands(PROFILE_BUILDERS)


#: name -> (one-line help shown by ``--help``, loader).
_GROUPS: dict[str, tuple[str, Callable[[], click.Command]]] = {
    "audit": (
        "The audit log: verify, seal, prove, check, compact, query, export, monitor.",
        _audit,
    ),
    "cost": ("Cost per model, team and tenant.", lambda: _attr("infertrail.cost.cli:cost")),
    "drift": ("Drift reference profiles.", _drift),
    "export": (
        "Alert rules, SLO rules and dashboards for Prometheus and Grafana.",
        _export,
    ),
    "keys": ("The audit log's signing key.", lambda: _attr("infertrail.audit.cli:keys")),
    "outcomes": (
        "Ground truth joined to predictions; model performance.",
        lambda: _attr("infertrail.outcomes.cli:outcomes"),
    ),
    "privacy": (
        "Subjects' rights: erasure, status, raw payloads.",
        lambda: _attr("infertrail.privacy.cli:privacy"),
    ),
    "report": (
        "Reports as HTML or PDF files: drift, performance, SLOs, compliance evidence.",
        lambda: _attr("infertrail.console.cli:report"),
    ),
    "retention": (
        "What expires when; crypto-shredding of expired months' keys.",
        lambda: _attr("infertrail.retention.cli:retention"),
    ),
    "simulate": (
        "Drive a running service with clean or corrupted traffic.",
        lambda: _attr("infertrail.demo.simulate:simulate"),
    ),
    "slo": ("Service level objectives.", lambda: _attr("infertrail.slo.cli:slo")),
    "users": (
        "API keys and roles of the compliance API.",
        lambda: _attr("infertrail.compliance.cli:users"),
    ),
    "witness": (
        "A C2SP witness: cosigns logs' checkpoints that extend what it saw.",
        lambda: _attr("infertrail.witness.cli:witness"),
    ),
}


class _LazyGroup(click.Group):
    """A group whose feature subcommands are imported when one of them is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_GROUPS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in _GROUPS:
            with _needs_extra(f"infertrail {cmd_name}"):
                found = _GROUPS[cmd_name][1]()
            self.add_command(found, cmd_name)
        return found

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is not None:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
            else:
                rows.append((name, _GROUPS[name][0]))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup)
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
@click.argument(
    "model", type=click.Choice(["sentiment", "credit", "digits", "demo-llm", "all"]), default="all"
)
@click.option("--json", "as_json", is_flag=True, help="Print the trained models as JSON.")
@pass_ctx
def train(ctx: CliContext, model: str, as_json: bool) -> None:
    """Train demo models deterministically and save each with its sha256.

    ``all`` includes the demo LLM when torch is installed (the ``[llm]`` extra). ``--json``:
    one JSON list on stdout (name, version, sha256, path, or why a model was skipped), no bar.
    """
    import importlib.util
    import time

    from infertrail.models import LLM_TRAIN_SECONDS, TRAINERS, train_llm
    from infertrail.models.llm import NAME as LLM_NAME
    from infertrail.progress import progress

    s = ctx.settings
    s.ensure_dirs()
    trained: list[dict[str, object]] = []

    def done(info: ModelInfo, seconds: float, note: str = "") -> None:
        path = s.models_dir / info.name
        trained.append(
            {"name": info.name, "version": info.version, "sha256": info.sha256,
             "path": str(path), "seconds": round(seconds, 1)}
        )  # fmt: skip
        if not as_json:
            click.echo(f"trained {info.name} {info.version} sha256={info.sha256} -> {path}{note}")

    chosen = [name for name in TRAINERS if model in (name, "all")]
    with progress(len(chosen), "training", "models", enabled=not as_json) as bar:
        for name in chosen:
            t0 = time.monotonic()
            done(TRAINERS[name](s.models_dir), time.monotonic() - t0)
            bar.advance()
    if model in (LLM_NAME, "all"):
        if importlib.util.find_spec("torch") is None:
            hint = "pip install 'infertrail[llm]' (torch, CPU: ~1 GB), or run make demo"
            if model == LLM_NAME:
                raise UsageProblem(f"the demo LLM needs torch: {hint}")
            trained.append({"name": LLM_NAME, "skipped": f"torch is not installed; {hint}"})
            if not as_json:
                click.echo(f"skipped {LLM_NAME}: torch is not installed; to train it, {hint}")
        else:
            if not as_json:
                click.echo(f"training {LLM_NAME} (~{LLM_TRAIN_SECONDS:.0f} s on one thread) ...")
            t0 = time.monotonic()
            with progress(None, f"training {LLM_NAME}", enabled=not as_json):
                info = train_llm(s.models_dir)
            took = time.monotonic() - t0
            done(info, took, f" ({took:.1f} s with its drift reference)")
    if as_json:
        click.echo(json.dumps(trained, indent=2))


@main.command()
@click.option("--host", help="Interface to bind (default: the host setting, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8000; 0: any free).")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level (default: the log_level setting, INFO); INFO logs every request.",
)
@pass_ctx
def serve(ctx: CliContext, host: str | None, port: int | None, log_level: str | None) -> None:
    """Serve the demo models and the compliance API over HTTP until SIGTERM or Ctrl-C."""
    from infertrail.models import ModelArtifactError
    from infertrail.server.app import build_services
    from infertrail.server.serve import serve as run

    s = ctx.settings
    try:
        services = build_services(s)
    except ModelArtifactError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        run(services, host or s.host, s.port if port is None else port, log_level or s.log_level)
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
    with _needs_extra("the demo", extra="demo"):
        from infertrail.demo.run import run_demo
    sys.exit(run_demo(ctx.settings, n_requests=n_requests, port=port, keep_serving=keep_serving))
