"""Install footprint and start-up times of infertrail (issue 12, "a light install").

For each install variant, the core (``.``) and every extra in pyproject.toml's
``[project.optional-dependencies]`` (``.[x]``, ``.[all]`` last when it exists), creates a fresh
venv (``python -m venv``), installs the project into it with pip, non-editable, and measures:

- the disk usage of its site-packages in MB (MiB of disk blocks, as ``du -sm`` counts them, the
  ``.pyc`` files pip compiles included): **raw**, and **net** of an empty venv's site-packages
  (pip and setuptools, the baseline every venv starts with);
- the number of distributions the install added (``*.dist-info`` not in the empty venv).

Then, in the core venv and in the development venv (``.venv``, editable, every extra), times a
fresh process of ``python -c "import infertrail"``, ``python -c "import infertrail; from
infertrail.monitor import Monitor"`` and ``infertrail --help``: ``time.perf_counter`` around
``subprocess.run``, one untimed warm-up, then ``--runs`` rounds that take the commands in turn
(so a noisy moment hits them all), reporting medians. ``python -X importtime`` of the monitor
import in the core venv shows which imports dominate.

The project is installed as pip installs a path: its wheel is built once (``pip wheel``, the
build hook compiles the C speedups) from a snapshot of the working tree (tracked and untracked,
not ignored, files; ``--ref`` takes a commit instead) copied to the work directory, then each
venv installs ``<wheel>[extra]``. The snapshot keeps every variant on the same tree while others
edit it, and the in-tree build would otherwise write ``src/infertrail/_native*.so``.

    .venv/bin/python bench/footprint.py                         # every variant, 7 runs
    .venv/bin/python bench/footprint.py --variants core --runs 3 --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024

# Issue 12 ("light install"): "core install <= 150 MB (today 608 MB), `import infertrail` + the
# monitor <= 0.3 s, `infertrail --help` <= 0.6 s (today 3.3 s)", measured by this script. The
# install target is judged on the net MB (what infertrail adds to an empty venv).
TARGETS: dict[str, float] = {
    "core install MB": 150.0,
    "import infertrail + monitor": 0.3,
    "infertrail --help": 0.6,
}

# label -> (executable in the venv's bin/, arguments)
COMMANDS: dict[str, tuple[str, list[str]]] = {
    "import infertrail": ("python", ["-c", "import infertrail"]),
    "import infertrail + monitor": (
        "python",
        ["-c", "import infertrail; from infertrail.monitor import Monitor"],
    ),
    "infertrail --help": ("infertrail", ["--help"]),
}
IMPORTTIME_COMMAND = "import infertrail + monitor"
IMPORTTIME_TOP = 10

# Variables that would make a subprocess import something else than the venv's own packages, or
# skip the bytecode cache.
_DROPPED_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONDONTWRITEBYTECODE",
    "VIRTUAL_ENV",
)


def clean_env() -> dict[str, str]:
    """This process's environment without the variables that would change what is imported."""
    return {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1/5/15-minute load averages, to judge how noisy the machine was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def git(*args: str) -> str:
    """Output of a git command run in the repository."""
    return subprocess.run(
        ["git", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()


def snapshot(dest: Path, ref: str | None) -> str:
    """Copy the project's source to ``dest``; return a description of what was copied.

    Without ``ref``: the working tree's tracked and untracked, not ignored, files as they are
    now. With ``ref``: that commit's tree (``git archive``).
    """
    dest.mkdir(parents=True)
    if ref is not None:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", ref], cwd=REPO, check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
        return f"commit {git('rev-parse', '--short', ref)} ({ref})"
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # staged deletions and renames still list the old path
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    dirty = " with uncommitted changes" if git("status", "--porcelain") else ""
    return f"working tree at {git('rev-parse', '--short', 'HEAD')}{dirty}"


def extras_of(pyproject: Path) -> list[str]:
    """The extras declared in ``pyproject``, in file order, with ``all`` moved last."""
    with pyproject.open("rb") as f:
        extras = list(tomllib.load(f).get("project", {}).get("optional-dependencies", {}))
    return sorted(extras, key=lambda name: name == "all")


@dataclass
class Venv:
    """A virtual environment: where it is and where its packages go."""

    root: Path
    site_packages: list[Path]

    def bin(self, name: str) -> Path:
        """An executable in the venv's ``bin/``."""
        return self.root / "bin" / name


def create_venv(root: Path) -> Venv:
    """``python -m venv root`` with this interpreter (its base Python, pip bundled)."""
    if root.exists():
        shutil.rmtree(root)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, env=clean_env())
    return open_venv(root)


def open_venv(root: Path) -> Venv:
    """An existing venv, its site-packages as its own Python reports them."""
    code = "import sysconfig as s; print(s.get_path('purelib'), s.get_path('platlib'), sep='\\n')"
    out = subprocess.run(
        [str(root / "bin" / "python"), "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=clean_env(),
    ).stdout
    paths = dict.fromkeys(Path(line).resolve() for line in out.splitlines() if line)
    return Venv(root, list(paths))


def disk_usage(roots: list[Path]) -> int:
    """Bytes of disk blocks under ``roots``, directories included, hard links once (``du``)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [".", *dirnames, *filenames]:
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def distributions(venv: Venv) -> set[str]:
    """Names (``name-version``) of the distributions installed in ``venv``."""
    return {
        p.name.removesuffix(".dist-info")
        for sp in venv.site_packages
        for p in sp.glob("*.dist-info")
    }


def build_wheel(venv: Venv, source: Path, out: Path) -> Path:
    """The project's wheel, built from ``source`` by ``pip wheel`` (build isolation, hatchling)."""
    argv = [str(venv.bin("python")), "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(source)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    (wheel,) = out.glob("infertrail-*.whl")
    return wheel


@dataclass
class Footprint:
    """One install variant: its size and what it installed."""

    variant: str
    requirement: str
    mib_raw: float = 0.0
    mib_net: float = 0.0
    distributions: list[str] = field(default_factory=list)
    install_s: float = 0.0
    error: str | None = None


def install(
    variant: str, wheel: Path, work: Path, baseline: Footprint, baseline_dists: set[str]
) -> Footprint:
    """Create the variant's venv, pip install the wheel with the variant's extra, measure it."""
    requirement = "." if variant == "core" else f".[{variant}]"
    result = Footprint(variant, requirement)
    venv = create_venv(work / f"venv-{variant}")
    target = str(wheel) if variant == "core" else f"{wheel}[{variant}]"
    log = work / f"pip-{variant}.log"
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            [str(venv.bin("python")), "-m", "pip", "install", target],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            check=False,
        )
    result.install_s = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        result.error = f"pip exited {proc.returncode}: " + " / ".join(tail)
        return result
    result.mib_raw = disk_usage(venv.site_packages) / MIB
    result.mib_net = result.mib_raw - baseline.mib_raw
    result.distributions = sorted(distributions(venv) - baseline_dists)
    return result


@dataclass
class Timing:
    """Wall time of one command in one venv over fresh processes."""

    command: str
    venv: str
    samples_s: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)


def command_argv(venv: Venv, command: str) -> list[str]:
    """The argument vector of ``command`` (a ``COMMANDS`` label) in ``venv``."""
    exe, args = COMMANDS[command]
    return [str(venv.bin(exe)), *args]


def time_commands(venvs: dict[str, Venv], runs: int, cwd: Path) -> list[Timing]:
    """Median wall time of every command in every venv, ``runs`` fresh processes each.

    One untimed warm-up each (page cache, bytecode), then rounds that take every (venv, command)
    in turn, starting one later each round, so that a noisy moment is shared.
    """
    env = clean_env()
    timings: list[tuple[Timing, list[str]]] = []
    for name, venv in venvs.items():
        for command in COMMANDS:
            timing, argv = Timing(command, name), command_argv(venv, command)
            try:
                warm = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
            except OSError as exc:  # no such script in this venv
                timing.error = str(exc)
            else:
                if warm.returncode != 0:
                    last = (warm.stderr.strip().splitlines() or ["no output"])[-1]
                    timing.error = f"exit {warm.returncode}: {last}"
            timings.append((timing, argv))
    active = [(t, argv) for t, argv in timings if t.error is None]
    for r in range(runs):
        k = r % len(active) if active else 0
        for timing, argv in active[k:] + active[:k]:
            t0 = time.perf_counter()
            proc = subprocess.run(
                argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0:
                timing.error = f"exit {proc.returncode} in run {r + 1}"
            timing.samples_s.append(elapsed)
    return [t for t, _ in timings]


_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$")


@dataclass
class ImportCost:
    """One line of ``python -X importtime``: a module's own and cumulative import time."""

    module: str
    depth: int
    self_ms: float
    cumulative_ms: float


def import_costs(venv: Venv, command: str, cwd: Path) -> list[ImportCost]:
    """Every module ``command`` imports, with its times, from ``python -X importtime``."""
    exe, args = COMMANDS[command]
    if exe != "python":
        raise ValueError(f"-X importtime needs a python command, not {command!r}")
    proc = subprocess.run(
        [str(venv.bin("python")), "-X", "importtime", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return []  # the timing table reports the failure
    costs = []
    for line in proc.stderr.splitlines():
        if m := _IMPORTTIME.match(line):
            self_us, cumulative_us, indent, module = m.groups()
            costs.append(
                ImportCost(module, len(indent) // 2, int(self_us) / 1e3, int(cumulative_us) / 1e3)
            )
    return costs


def self_time_by_package(costs: list[ImportCost]) -> list[tuple[str, float, int]]:
    """(top-level package, its modules' own import ms summed, module count), most costly first.

    Own times add up without double counting, unlike cumulative ones, so this says which
    packages the time is spent in, whoever imported them.
    """
    totals: dict[str, tuple[float, int]] = {}
    for c in costs:
        root = c.module.split(".", 1)[0]
        ms, count = totals.get(root, (0.0, 0))
        totals[root] = (ms + c.self_ms, count + 1)
    return sorted(((k, ms, n) for k, (ms, n) in totals.items()), key=lambda t: -t[1])


def print_table(headers: list[str], rows: list[list[str]], align: str) -> None:
    """A Markdown table with padded columns; ``align`` has one ``l`` or ``r`` per column."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if a == "l" else c.rjust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    print(line(headers))
    rule = ("-" * (w + 1) + ("-" if a == "l" else ":") for w, a in zip(widths, align, strict=True))
    print("|" + "|".join(rule) + "|")
    for row in rows:
        print(line(row))


def met(value: float, target: float) -> str:
    """``met`` or ``MISSED`` for a value that must not exceed ``target``."""
    return "met" if value <= target else "MISSED"


def report_footprints(footprints: list[Footprint], baseline: Footprint) -> None:
    """The install table, then the footprint target."""
    print(
        f"\nINSTALL FOOTPRINT (MB = MiB of disk, as du -sm; empty venv {baseline.mib_raw:.1f} MB:"
    )
    print(f"{', '.join(baseline.distributions)}; net = raw - empty)")
    rows = []
    for fp in footprints:
        if fp.error:
            rows.append([fp.requirement, "failed", "", "", f"{fp.install_s:.0f}"])
        else:
            rows.append(
                [
                    fp.requirement,
                    f"{fp.mib_net:.1f}",
                    f"{fp.mib_raw:.1f}",
                    str(len(fp.distributions)),
                    f"{fp.install_s:.0f}",
                ]
            )
    print_table(["variant", "MB net", "MB raw", "distributions", "install s"], rows, "lrrrr")
    for fp in footprints:
        if fp.error:
            print(f"failed   {fp.requirement}: {fp.error}")
    core = next((fp for fp in footprints if fp.variant == "core" and not fp.error), None)
    if core is not None:
        target = TARGETS["core install MB"]
        print(
            f"target   core install <= {target:.0f} MB net: {met(core.mib_net, target).upper()}"
            f" ({core.mib_net:.1f} MB net, {core.mib_raw:.1f} MB raw)"
        )


def report_timings(timings: list[Timing], runs: int) -> None:
    """The start-up table: median of fresh processes against the targets."""
    print(f"\nSTART-UP (wall time of a fresh process, median of {runs}; range min-max)")
    rows = []
    for t in timings:
        target = TARGETS.get(t.command)
        target_s = f"<= {target}" if target is not None else "-"
        if t.error or not t.samples_s:
            rows.append([t.command, t.venv, "failed", "", target_s, ""])
            continue
        verdict = met(t.median_s, target) if target is not None else "-"
        spread = f"{min(t.samples_s):.3f}-{max(t.samples_s):.3f}"
        rows.append([t.command, t.venv, f"{t.median_s:.3f}", spread, target_s, verdict])
    print_table(["command", "venv", "median s", "range s", "target s", "met?"], rows, "llrrrl")
    for t in timings:
        if t.error:
            print(f"failed   {t.command} in {t.venv}: {t.error}")


def report_imports(costs: list[ImportCost]) -> None:
    """The top cumulative importers of the monitor import, and own time per package."""
    code = COMMANDS[IMPORTTIME_COMMAND][1][1]
    print(f"\nIMPORTS of `{code}` in core")
    print("(python -X importtime, 1 run; its own bookkeeping adds time)")
    top = sorted(costs, key=lambda c: -c.cumulative_ms)[:IMPORTTIME_TOP]
    print_table(
        ["module (indent = depth)", "cumulative ms", "self ms"],
        [["  " * c.depth + c.module, f"{c.cumulative_ms:.1f}", f"{c.self_ms:.1f}"] for c in top],
        "lrr",
    )
    print("\nown import time summed by top-level package (stdlib included), top 10:")
    parts = [
        f"{root} {ms:.0f} ms ({n})" for root, ms, n in self_time_by_package(costs)[:IMPORTTIME_TOP]
    ]
    print("         " + ", ".join(parts))
    print(f"         {len(costs)} modules imported in all")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variants",
        help="comma-separated: core and/or extras of pyproject.toml (default: all of them)",
    )
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per timed command")
    parser.add_argument(
        "--keep", action="store_true", help="keep the venvs in bench/out/footprint/"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--ref", help="install this commit (git archive) instead of the working tree"
    )
    parser.add_argument(
        "--dev-venv", type=Path, default=REPO / ".venv", help="development venv to time too"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")

    if args.keep:
        work = REPO / "bench" / "out" / "footprint"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="infertrail-footprint-"))
    started = time.perf_counter()
    try:
        source = snapshot(work / "src", args.ref)
        extras = extras_of(work / "src" / "pyproject.toml")
        available = ["core", *extras]
        variants = available if args.variants is None else args.variants.split(",")
        unknown = [v for v in variants if v not in available]
        if unknown:
            parser.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(available)}")

        print("infertrail install footprint and start-up")
        print(f"machine  {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs ({cpu_model()})")
        print(f"python   {platform.python_version()} ({sys.executable} -m venv)")
        print(f"date     {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
        print(f"load     {load_average()} (1/5/15 min) at start: other work adds noise")
        print(f"source   {source}")
        print(f"extras   {', '.join(extras) or 'none'}; measuring {', '.join(variants)}")
        print(f"work dir {work}{'' if args.keep else ' (deleted at the end; --keep keeps it)'}")

        empty = create_venv(work / "venv-empty")
        empty_dists = distributions(empty)
        baseline = Footprint("empty", "(empty venv)", mib_raw=disk_usage(empty.site_packages) / MIB)
        baseline.distributions = sorted(empty_dists)
        t0 = time.perf_counter()
        wheel = build_wheel(empty, work / "src", work / "wheel")
        built_s = time.perf_counter() - t0
        print(
            f"wheel    {wheel.name}, {wheel.stat().st_size / MIB:.2f} MB, built in {built_s:.1f} s"
        )

        footprints = []
        for variant in variants:
            fp = install(variant, wheel, work, baseline, empty_dists)
            footprints.append(fp)
            status = fp.error or f"{fp.mib_net:.1f} MB net, {len(fp.distributions)} distributions"
            print(f"install  {fp.requirement:<12} {fp.install_s:5.1f} s  {status}", flush=True)

        venvs: dict[str, Venv] = {}
        if any(fp.variant == "core" and not fp.error for fp in footprints):
            venvs["core"] = open_venv(work / "venv-core")
        if (args.dev_venv / "bin" / "python").exists():
            venvs["dev (.venv, editable)"] = open_venv(args.dev_venv)
            if args.ref is not None:
                print(f"note     the editable dev venv runs the working tree, not {args.ref}")
        timings = time_commands(venvs, args.runs, work)
        costs = import_costs(venvs["core"], IMPORTTIME_COMMAND, work) if "core" in venvs else []

        report_footprints(footprints, baseline)
        report_timings(timings, args.runs)
        if costs:
            report_imports(costs)
        elif "core" not in venvs:
            print("\nno core venv: start-up measured in the development venv only")
        elapsed = time.perf_counter() - started
        print(f"\nload     {load_average()} (1/5/15 min) at the end; whole run {elapsed:.0f} s")

        if args.json is not None:
            results: dict[str, Any] = {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": platform.machine(),
                "cpus": len(os.sched_getaffinity(0)),
                "cpu_model": cpu_model(),
                "python": platform.python_version(),
                "source": source,
                "wheel": wheel.name,
                "targets": TARGETS,
                "runs": args.runs,
                "empty_venv": asdict(baseline),
                "footprints": [asdict(fp) for fp in footprints],
                "timings": [
                    {**asdict(t), "median_s": t.median_s if t.samples_s else None} for t in timings
                ],
                "imports": [asdict(c) for c in costs],
                "elapsed_s": elapsed,
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
            print(f"json     {args.json}")
        failed = any(fp.error for fp in footprints) or any(t.error for t in timings)
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
