"""Drift monitoring of a running service: one :class:`DriftMonitor` per served model.

:func:`open_drift_monitors` finds each model's reference profile (given, or the one saved
beside the model and checked against its sha256), builds one ``DriftMonitor`` per model (the
runtime registers each as a background ``Monitor`` sink), publishes every report as drift gauges
(``/metrics``) and, when there is an alert engine, feeds it each closed window. Nothing here
runs on the request thread.

A model whose profile is missing or belongs to an older artifact gets it rebuilt at start-up,
with a warning, when the caller hands over a builder for it (the served demo models' are in
``infertrail.models.PROFILE_BUILDERS``); otherwise that is an error naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from opentelemetry.metrics import Meter

from infertrail.alerting import AlertEngine
from infertrail.config import Settings
from infertrail.drift import (
    DriftConfig,
    DriftMetrics,
    DriftMonitor,
    Profile,
    ProfileError,
    load_profile,
    profile_path,
)
from infertrail.drift.analysis import WindowAnalyzer
from infertrail.drift.embedding import EmbeddingDriftAnalyzer, EmbeddingReference, embedding_path
from infertrail.drift.multivariate import DomainClassifierDrift, ReconstructionDrift
from infertrail.drift.quality import DataQualityAnalyzer, quality_schema_for
from infertrail.drift.slices import Slicer, SliceSpec, parse_slice_specs
from infertrail.estimation.analyzer import CbpeAnalyzer
from infertrail.estimation.cbpe import CbpeModel
from infertrail.estimation.cbpe_io import CbpeFileError, cbpe_path
from infertrail.events import ModelInfo
from infertrail.runtime.alerts import drift_listener

log = logging.getLogger("infertrail.drift")

#: Rebuilds a model's reference profile under a models root; returns the profile's path.
ProfileBuilder = Callable[[Path], Path]


def _recorded_sha256(path: Path) -> str | None:
    """The model sha256 a profile file names, or None if it cannot be read."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        sha = meta["model"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sha if isinstance(sha, str) else None


def load_reference(
    models_root: Path, info: ModelInfo, builders: Mapping[str, ProfileBuilder] | None = None
) -> Profile:
    """The profile of the served artifact ``info``; a demo model's is rebuilt if missing or stale.

    A profile that exists for this artifact but does not load (damaged, another format version)
    is an error: silently replacing it would hide the damage.
    """
    path = profile_path(models_root, info.name)
    stale = path.is_file() and _recorded_sha256(path) not in (None, info.sha256)
    if path.is_file() and not stale:
        return load_profile(path, expected_sha256=info.sha256)
    rebuild = (builders or {}).get(info.name)
    if rebuild is None:
        why = "belongs to another artifact" if stale else "is missing"
        raise ProfileError(
            f"profile {path} {why} and model {info.name!r} has no baseline builder; build it "
            "with build_tabular_profile/build_image_profile/build_text_profile and save it there"
        )
    log.warning(
        "drift profile %s %s; rebuilding it from the training data",
        path,
        "belongs to an older artifact" if stale else "is missing",
    )
    rebuild(models_root)
    return load_profile(path, expected_sha256=info.sha256)


def _seed(model_name: str) -> int:
    """A stable per-model sampling seed, so sampling is reproducible across restarts."""
    return zlib.crc32(model_name.encode())


#: A model's reference profile as given to the runtime: loaded, or the path of its JSON file.
ProfileSource = Profile | str | os.PathLike[str]


def _profile_of(
    settings: Settings,
    info: ModelInfo,
    given: ProfileSource | None,
    builders: Mapping[str, ProfileBuilder] | None,
) -> Profile | None:
    """The model's profile, or None (with a warning) when it has none and none can be built."""
    if isinstance(given, Profile):
        if given.model_sha256 and given.model_sha256 != info.sha256:
            raise ProfileError(
                f"the profile given for {info.name!r} was built for model sha256 "
                f"{given.model_sha256}, not the served {info.sha256}"
            )
        return given
    if given is not None:
        return load_profile(Path(given), expected_sha256=info.sha256)
    path = profile_path(settings.models_dir, info.name)
    if not path.is_file() and info.name not in (builders or {}):
        log.warning(
            "drift monitoring is off for model %r: no reference profile at %s (build one with "
            "`infertrail drift baseline --name %s ...`, or pass profiles= to the runtime)",
            info.name,
            path,
            info.name,
        )
        return None
    return load_reference(settings.models_dir, info, builders)


def window_analyzers(
    settings: Settings,
    profile: Profile,
    estimator_builders: Mapping[str, ProfileBuilder] | None = None,
) -> list[WindowAnalyzer]:
    """The analyzers that judge each of the model's windows after the univariate detector.

    Data quality (against ``quality.json`` beside the model, or the schema inferred from the
    profile), CBPE estimates (when ``cbpe.json`` was fitted for this artifact; rebuilt with a
    warning when missing or stale and the caller hands over a builder) and the configured
    multivariate statistics; prompt drift when ``embedding.npz`` (an LLM model's prompt
    embedding reference) lies beside the profile. A damaged or mismatched schema, estimator or
    embedding file fails the start, naming the file, like a damaged profile does.
    """
    analyzers: list[WindowAnalyzer] = []
    name = profile.model_name
    if settings.drift_quality:
        schema = quality_schema_for(settings.models_dir, profile)
        analyzers.append(DataQualityAnalyzer(profile, schema))
    model = (
        _estimator(settings, profile, estimator_builders or {})
        if settings.drift_estimates
        else None
    )
    if model is not None:
        labels = profile.prediction.categories if profile.prediction is not None else ()
        analyzers.append(CbpeAnalyzer(model, labels))
    wanted = [s for s in settings.drift_multivariate.split(",") if s]
    kinds = {"reconstruction": ReconstructionDrift, "domain_classifier": DomainClassifierDrift}
    for kind in wanted:
        try:
            analyzers.append(kinds[kind](profile, seed=_seed(name)))
        except ValueError as exc:  # one feature, or a reference sample too small to calibrate
            log.warning("%s drift is off for model %r: %s", kind, name, exc)
    prompts = embedding_path(settings.models_dir, name)
    if settings.drift_embedding and prompts.is_file():
        reference = EmbeddingReference.load(prompts, expected_sha256=profile.model_sha256 or None)
        analyzers.append(EmbeddingDriftAnalyzer(reference, seed=_seed(name)))
    return analyzers


def _estimator(
    settings: Settings, profile: Profile, builders: Mapping[str, ProfileBuilder]
) -> CbpeModel | None:
    """The model's CBPE estimator: ``cbpe.json`` if fitted for this artifact, else rebuilt."""
    name, path = profile.model_name, cbpe_path(settings.models_dir, profile.model_name)
    expected = profile.model_sha256 or None
    builder = builders.get(name)
    if path.is_file():
        try:
            return CbpeModel.load(path, expected_sha256=expected)
        except CbpeFileError as exc:
            if builder is None:
                raise
            log.warning("rebuilding the CBPE estimator of %r: %s", name, exc)
    elif builder is None:
        return None
    else:
        log.warning("rebuilding the missing CBPE estimator of %r at %s", name, path)
    assert builder is not None
    return CbpeModel.load(builder(settings.models_dir), expected_sha256=expected)


def drift_slicers(settings: Settings, profiles: Sequence[Profile]) -> dict[str, Slicer]:
    """Each model's slicer from ``drift_slices``: the attribute specs, and the feature specs
    whose feature the model has. ValueError for a malformed spec, or a feature spec no model
    has (a typo would otherwise slice nothing, silently)."""
    try:
        specs = parse_slice_specs(settings.drift_slices)
    except ValueError as exc:
        raise ValueError(f"drift_slices: {exc}") from None
    if not specs:
        return {}
    slicers: dict[str, Slicer] = {}
    used: set[SliceSpec] = set()
    for profile in profiles:
        mine = [
            spec
            for spec in specs
            if spec.source == "attribute" or spec.name in profile.feature_names
        ]
        used.update(mine)
        if mine:
            try:
                slicers[profile.model_name] = Slicer(profile, mine, settings.drift_max_slices)
            except ValueError as exc:
                raise ValueError(f"drift_slices, model {profile.model_name!r}: {exc}") from None
    unused = [spec.label for spec in specs if spec not in used]
    if unused and profiles:
        raise ValueError(
            f"drift_slices: no served model with a reference profile has the feature of "
            f"{', '.join(map(repr, unused))}"
        )
    return slicers


def open_drift_monitors(
    settings: Settings,
    models: Sequence[ModelInfo],
    meter: Meter,
    *,
    profiles: Mapping[str, ProfileSource] | None = None,
    builders: Mapping[str, ProfileBuilder] | None = None,
    estimator_builders: Mapping[str, ProfileBuilder] | None = None,
    engine: AlertEngine | None = None,
    config: DriftConfig | None = None,
) -> dict[str, DriftMonitor]:
    """One started drift monitor per model that has a reference profile, by model name.

    Its reports become drift gauges and, with an ``engine``, alert evaluations. Fails before
    starting anything when a profile is damaged, belongs to another artifact or a setting is
    invalid; the caller registers the monitors as sinks (and closes them).
    """
    given = dict(profiles or {})
    unknown = set(given) - {info.name for info in models}
    if unknown:
        raise ValueError(f"profiles given for models that are not served: {sorted(unknown)}")
    found = [
        p for info in models if (p := _profile_of(settings, info, given.get(info.name), builders))
    ]
    analyzers = {p.model_name: window_analyzers(settings, p, estimator_builders) for p in found}
    slicers = drift_slicers(settings, found)
    monitors: dict[str, DriftMonitor] = {}
    try:
        for profile in found:
            monitors[profile.model_name] = DriftMonitor(
                profile,
                config,
                window_size=settings.drift_window_size,
                window_seconds=settings.drift_window_seconds,
                sample_rate=settings.drift_sample_rate,
                seed=_seed(profile.model_name),
                analyzers=analyzers[profile.model_name],
                slicer=slicers.get(profile.model_name),
                min_slice_samples=min(settings.drift_min_slice_samples, settings.drift_window_size),
            )
    except BaseException:
        for built in monitors.values():
            built.close(0.0)
        raise
    metrics = DriftMetrics(meter)
    for monitor in monitors.values():
        monitor.add_listener(metrics.record)
        if engine is not None:
            monitor.add_listener(drift_listener(engine))
    return monitors
