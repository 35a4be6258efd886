"""``infertrail drift ...``: reference profiles and data-quality schemas.

``drift baseline`` builds reference profiles in two ways: for the models the top-level command
knows (the served demo models, whose builders :func:`drift_commands` is handed so that this
package does not import them), and, with ``--name``, for any model from its training table.
The second way's logic is in :mod:`infertrail.drift.reference`, imported when the command runs
so that importing this module (and so starting the top-level CLI) loads no pyarrow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from infertrail.commandline import UsageProblem, settings_of
from infertrail.progress import progress

if TYPE_CHECKING:
    from infertrail.drift.profile import Profile
    from infertrail.drift.reference import ReferenceBuild

__all__ = ["BaselineBuilder", "drift_commands"]

#: Rebuilds a known model's reference profile under a models root; returns the profile path.
BaselineBuilder = Callable[[Path], Path]

_FILE = click.Path(path_type=Path, exists=True, dir_okay=False)
_FILE_OR_DIR = click.Path(path_type=Path, exists=True)


def drift_commands(known: Mapping[str, BaselineBuilder]) -> click.Group:
    """The ``drift`` command group; ``known`` maps model names to their baseline builders."""

    @click.group("drift")
    def drift() -> None:
        """Drift reference profiles and data-quality schemas."""

    @drift.command("baseline")
    @click.argument("models", nargs=-1, type=click.Choice(sorted(known)), metavar="[MODEL]...")
    @click.option(
        "--name", help="Your model's name (as it is served): profile it from --reference."
    )
    @click.option("--model-version", help="Your model's version (shown with the result).")
    @click.option(
        "--reference",
        type=_FILE_OR_DIR,
        help="Training data: .parquet/.pq (or a directory of them, read in batches), "
        ".csv/.tsv (optionally .gz), .npy or .npz.",
    )
    @click.option("--schema", type=_FILE, help="JSON file naming the features and their types.")
    @click.option(
        "--columns",
        metavar="NAME[:TYPE],...",
        help="The features, TYPE numeric or categorical (inferred if left out); or --schema.",
    )
    @click.option("--target", metavar="COLUMN", help="The label column: never a feature.")
    @click.option(
        "--exclude",
        multiple=True,
        metavar="COLUMN,...",
        help="Columns that are not features (repeatable); when the features are inferred.",
    )
    @click.option(
        "--model",
        "model_spec",
        metavar="MODULE:FUNCTION",
        help="Returns the fitted model: its predictions and confidences are profiled too.",
    )
    @click.option(
        "--import-dir",
        type=click.Path(path_type=Path, exists=True, file_okay=False),
        default=Path(),
        show_default=True,
        help="Directory MODULE is imported from, before the installed packages.",
    )
    @click.option("--artifact", type=_FILE, help="Your model's file: its sha256 identifies it.")
    @click.option("--sha256", "sha256", metavar="HEX", help="Your model's sha256 (or --artifact).")
    @click.option(
        "--na-values",
        metavar="TOKEN,...",
        help="CSV/TSV fields read as missing, besides empty ones "
        "[default: NA,N/A,NaN,nan,null,NULL].",
    )
    @click.option(
        "--sample-size",
        type=click.IntRange(min=1),
        default=5000,
        show_default=True,
        help="Reference rows kept for exact tests and calibration.",
    )
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample.")
    @click.option(
        "--out",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Profile file (.json, arrays beside it in .npz) "
        "[default: <data_dir>/models/<name>/profile.json].",
    )
    @click.pass_context
    def baseline(ctx: click.Context, /, models: tuple[str, ...], **own: Any) -> None:
        """Build reference profiles: of built-in models (MODEL, default: every one trained),
        or of your own model with --name (see docs/drift.md)."""
        if own["name"] is not None:
            if models:
                raise UsageProblem(
                    f"give built-in models ({', '.join(models)}) or --name, not both"
                )
            _baseline_own(ctx, **own)
            return
        given = _given_options(ctx)
        if given:
            raise UsageProblem(f"{given[0]} is for your own model: give its --name too")
        _baseline_known(ctx, known, models)

    @drift.command("schema")
    @click.option(
        "--model",
        "model_name",
        required=True,
        metavar="NAME",
        help="The model whose reference profile (<data_dir>/models/NAME/profile.json) is read.",
    )
    @click.option(
        "--out",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Write the schema here [default: standard output]; "
        "<data_dir>/models/NAME/quality.json is where the checks look for it.",
    )
    @click.option("--force", is_flag=True, help="Replace --out if it exists (edits are lost).")
    @click.pass_context
    def schema(ctx: click.Context, /, model_name: str, out: Path | None, force: bool) -> None:
        """Write the data-quality schema inferred from a model's reference profile, to edit
        (see docs/data-quality.md)."""
        from infertrail.drift.quality_schema import QualitySchema

        path, profile = _reference_profile(ctx, model_name)
        if profile is None:
            raise click.ClickException(
                f"model {model_name!r} has no reference profile at {path}; build it with "
                "`infertrail drift baseline`"
            )
        inferred = QualitySchema.infer(profile)
        if out is None:
            click.echo(inferred.dumps(), nl=False)
            return
        if out.exists() and not force:
            raise UsageProblem(f"--out {out} exists; give --force to replace it")
        try:
            inferred.save(out)
        except OSError as exc:
            raise click.ClickException(f"cannot write the schema {out}: {exc}") from None
        click.echo(f"quality schema {model_name} -> {out}")

    @drift.command("check-schema")
    @click.argument("file", type=_FILE)
    @click.option(
        "--model",
        "model_name",
        metavar="NAME",
        help="Check it against this model's reference profile [default: the model it names].",
    )
    @click.pass_context
    def check_schema(ctx: click.Context, /, file: Path, model_name: str | None) -> None:
        """Validate a data-quality schema file; exit 1 naming every problem."""
        from infertrail.drift.quality_schema import QualitySchema, QualitySchemaError

        try:
            loaded = QualitySchema.load(file)
            path, profile = _reference_profile(ctx, model_name or loaded.model_name)
            if profile is not None:
                loaded.check(profile)
        except QualitySchemaError as exc:
            raise click.ClickException(str(exc)) from None
        if profile is None and model_name is not None:
            raise click.ClickException(f"model {model_name!r} has no reference profile at {path}")
        against = (
            f"checked against the reference profile {path}"
            if profile is not None
            else f"no reference profile at {path}: features and kinds not checked"
        )
        click.echo(
            f"{file}: valid quality schema of model {loaded.model_name!r}, "
            f"{len(loaded.features)} features ({against})"
        )

    return drift


def _reference_profile(ctx: click.Context, model_name: str) -> tuple[Path, Profile | None]:
    """Where the model's reference profile is under the data dir, and the profile (None when
    there is no file; a damaged one is an error)."""
    from infertrail.drift.profile import profile_path
    from infertrail.drift.profile_io import ProfileError, load_profile

    path = profile_path(settings_of(ctx).models_dir, model_name)
    if not path.is_file():
        return path, None
    try:
        return path, load_profile(path)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from None


def _given_options(ctx: click.Context) -> list[str]:
    """The options given on the command line (or by the environment), not left at default."""
    return [
        p.opts[0]
        for p in ctx.command.params
        if isinstance(p, click.Option)
        and p.name is not None
        and ctx.get_parameter_source(p.name) is not ParameterSource.DEFAULT
    ]


def _baseline_known(
    ctx: click.Context, known: Mapping[str, BaselineBuilder], models: tuple[str, ...]
) -> None:
    settings = settings_of(ctx)
    chosen = list(models) or [
        name for name in sorted(known) if (settings.models_dir / name).is_dir()
    ]
    if not chosen:
        raise click.ClickException(
            f"no trained model in {settings.models_dir}; run `infertrail train` first"
        )
    with progress(len(chosen), "profiling", "models") as bar:
        for name in chosen:
            try:
                path = known[name](settings.models_dir)
            except (OSError, ValueError, RuntimeError) as exc:
                raise click.ClickException(str(exc)) from exc
            bar.advance()
            click.echo(f"profile {name} -> {path}")


def _baseline_own(
    ctx: click.Context,
    *,
    name: str,
    model_version: str | None,
    reference: Path | None,
    schema: Path | None,
    columns: str | None,
    target: str | None,
    exclude: tuple[str, ...],
    model_spec: str | None,
    import_dir: Path,
    artifact: Path | None,
    sha256: str | None,
    na_values: str | None,
    sample_size: int,
    seed: int,
    out: Path | None,
) -> None:
    """``baseline --name``: the checks of the options, then :func:`build_reference`."""
    from infertrail.drift import reference as ref
    from infertrail.drift.profile import profile_path

    if not name.strip():
        raise UsageProblem("--name must not be empty: it is the name the model is served under")
    if reference is None:
        raise UsageProblem("--name needs --reference, the model's training data")
    if schema is not None and columns is not None:
        raise UsageProblem("--schema and --columns both choose the features: give one")
    if (artifact is None) == (sha256 is None):
        raise UsageProblem(
            "identify the model the profile belongs to: --artifact FILE or --sha256 HEX (one)"
        )
    if out is None:
        if Path(name).name != name or name in (".", ".."):
            raise UsageProblem(f"--name {name!r} cannot name a folder of its own; give --out")
        out = profile_path(settings_of(ctx).models_dir, name)
    if out.suffix != ".json":
        raise UsageProblem(f"--out {out} must end in .json (its arrays go beside it, in .npz)")
    loading = ref.import_path(import_dir) if model_spec else contextlib.nullcontext()
    try:
        digest = (
            ref.file_sha256(artifact) if artifact is not None else ref.parse_sha256(sha256 or "")
        )
        specs = None
        if schema is not None:
            specs = ref.load_schema(schema)
        elif columns is not None:
            specs = ref.parse_column_specs(columns)
        table = ref.open_table(
            reference, na_values=None if na_values is None else na_values.split(",")
        )
        with loading, _rows_progress(table.n_rows) as on_progress:
            model = ref.resolve_model(model_spec) if model_spec else None
            built = ref.build_reference(
                table,
                model_name=name,
                model_sha256=digest,
                specs=specs,
                target=target,
                exclude=[c.strip() for item in exclude for c in item.split(",") if c.strip()],
                model=model,
                sample_size=sample_size,
                seed=seed,
                progress=on_progress,
            )
    except ref.ReferenceInputError as exc:
        raise UsageProblem(str(exc)) from None
    except ref.ModelCodeError as exc:
        raise click.ClickException(str(exc)) from None
    _describe(built, reference, model_spec)
    try:
        built.profile.save(out)
    except OSError as exc:
        raise click.ClickException(f"cannot write the profile {out}: {exc}") from None
    version = f" {model_version}" if model_version else ""
    click.echo(f"model {name}{version}, sha256 {digest}", err=True)
    click.echo(f"profile {name} -> {out}")


@contextlib.contextmanager
def _rows_progress(total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for a reference read in batches (rows done, rows/s, time left),
    or None for a table read whole (``total`` None: one batch, nothing to show)."""
    if total is None:
        yield None
        return
    with progress(total, "profiling", "rows") as bar:
        yield bar.advance


def _describe(built: ReferenceBuild, reference: Path, model_spec: str | None) -> None:
    """What was profiled, on stderr: each feature's type and whether it was inferred."""
    profile = built.profile
    click.echo(
        f"reference {reference}: {profile.n_rows:,} rows, {len(built.features)} features", err=True
    )
    width = max(len(f.name) for f in built.features)
    for f in built.features:
        missing = f", {f.n_missing:,} missing" if f.n_missing else ""
        how = "declared" if f.reason == "declared" else f"inferred ({f.reason})"
        click.echo(f"  {f.name:<{width}}  {f.type:<11}  {how}{missing}", err=True)
    if any(f.reason != "declared" for f in built.features):
        click.echo("  (fix the types with --schema or --columns NAME:TYPE)", err=True)
    preds = built.predictions
    if preds is not None and profile.prediction is not None:
        labels = profile.prediction.categories
        shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
        conf = "; confidence from predict_proba" if preds.confidences else ""
        click.echo(f"predictions of {model_spec}: {len(labels)} labels ({shown}){conf}", err=True)
