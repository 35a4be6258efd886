"""``infertrail witness``: run a witness (``serve``) and create its key (``keys init``)."""

from __future__ import annotations

from pathlib import Path

import click

from infertrail.audit.cosignature import CosignatureError, CosignatureSigner
from infertrail.audit.keys import KeyFileError, read_private_key, verifier_key_path, write_key_pair
from infertrail.commandline import UsageProblem
from infertrail.witness.logs import KnownLogs, LogsConfigError, policy_log_keys
from infertrail.witness.service import Witness
from infertrail.witness.state import StateError, WitnessState

__all__ = ["witness"]

_KEY_FILE = click.Path(path_type=Path, dir_okay=False)


@click.group()
def witness() -> None:
    """A C2SP witness: cosigns only checkpoints that extend what it cosigned before."""


@witness.group()
def keys() -> None:
    """The witness's cosigning key."""


@keys.command("init")
@click.option(
    "--name", required=True, help="The witness's name, a schema-less URL (witness.example/w1)."
)
@click.option("--key-file", type=_KEY_FILE, required=True, help="Where to write it (0600).")
def keys_init(name: str, key_file: Path) -> None:
    """Create an Ed25519 cosigning key (never overwrites one); print its verifier key."""
    try:
        skey, vkey = CosignatureSigner.generate(name)
        write_key_pair(key_file, skey, vkey)
    except (KeyFileError, CosignatureError) as exc:
        raise UsageProblem(str(exc)) from exc
    click.echo(f"cosigning key: {key_file} (keep it secret)", err=True)
    click.echo(f"verifier key ({verifier_key_path(key_file)}), give it to the logs:", err=True)
    click.echo(vkey)


@witness.command()
@click.option("--key-file", type=_KEY_FILE, required=True, help="The cosigning key.")
@click.option(
    "--state-file",
    type=_KEY_FILE,
    required=True,
    help="The newest checkpoint cosigned per log (created if missing; one witness per file).",
)
@click.option(
    "--log",
    "log_keys",
    multiple=True,
    help="A log's checkpoint verifier key; its name is the log's origin. Repeatable.",
)
@click.option(
    "--logs",
    "logs_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A file of 'log <vkey>' lines (c2sp.org/tlog-policy), '#' comments.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=click.IntRange(0, 65535), required=True, help="0: any free port.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
def serve(
    key_file: Path,
    state_file: Path,
    log_keys: tuple[str, ...],
    logs_file: Path | None,
    host: str,
    port: int,
    log_level: str,
) -> None:
    """Serve add-checkpoint (and GET /checkpoint/<origin>) until SIGTERM or Ctrl-C."""
    from infertrail.witness.serve import serve as run

    try:
        signer = CosignatureSigner.from_key(
            read_private_key(key_file, "create one with `infertrail witness keys init`")
        )
    except (KeyFileError, CosignatureError) as exc:
        raise UsageProblem(f"cosigning key {key_file}: {exc}") from exc
    try:
        vkeys = list(log_keys)
        if logs_file is not None:
            vkeys += policy_log_keys(logs_file.read_text(), str(logs_file))
        logs = KnownLogs.of(vkeys)
    except (LogsConfigError, OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(str(exc)) from exc
    if not len(logs):
        raise UsageProblem("no log to witness: pass --log <vkey> or --logs <file>")
    try:
        state = WitnessState(state_file)
    except (StateError, OSError) as exc:
        raise UsageProblem(str(exc)) from exc
    try:
        run(Witness(signer, logs, state), host, port, log_level.upper())
    finally:
        state.close()
