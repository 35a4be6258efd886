"""Cost attribution: a background Monitor sink that prices every inference and sums it per hour.

Each event's request-thread CPU time (``cpu_ns``), wall time, accelerator seconds and tokens
are priced by the price version in force at the event's time (a generation's tokens by its
``provider/model`` price, else its model's) and added, in memory, to its key
(hour, team, model, version, endpoint, tenant, price version). A flusher thread writes the sums
to SQLite (``<data_dir>/cost/cost.db``) every ``flush_interval_s`` and, at the same time, samples
the whole process: CPU time (``time.process_time_ns``, every thread), wall time and resident
memory. The report compares the two: what requests consumed against what the process consumed,
the difference being the shared/idle remainder (framework, exporters, audit writer, idle
polling), which is listed as its own row, never hidden inside the per-team numbers.

The sink runs on the Monitor's worker thread and only updates two dicts; all I/O happens on the
flusher. Observable OpenTelemetry counters ``infertrail.cost.*`` read the running totals and put
them on ``/metrics`` (tenant is left off the metric attributes: unbounded cardinality).
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from infertrail.config import Settings
from infertrail.cost.prices import (
    CostBreakdown,
    PriceTable,
    default_price_table,
    load_price_table,
)
from infertrail.events import InferenceEvent
from infertrail.telemetry import conventions as c

__all__ = [
    "COST_DB",
    "METRIC_ACCELERATOR",
    "METRIC_AMOUNT",
    "METRIC_CPU",
    "METRIC_PROCESS_CPU",
    "METRIC_TOKENS",
    "CostAttribution",
    "UsageKey",
    "cost_db_path",
    "open_db",
]

_log = logging.getLogger("infertrail.cost")

COST_DB = "cost.db"
HOUR_NS = 3600 * 1_000_000_000

# Exported from here as before; conventions.py spells them.
METRIC_CPU = c.METRIC_COST_CPU
METRIC_ACCELERATOR = c.METRIC_COST_ACCELERATOR
METRIC_TOKENS = c.METRIC_COST_TOKENS
METRIC_AMOUNT = c.METRIC_COST_AMOUNT
METRIC_PROCESS_CPU = c.METRIC_COST_PROCESS_CPU

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    hour INTEGER NOT NULL,            -- Unix seconds of the UTC hour's start
    team TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    tenant TEXT NOT NULL,             -- '' when the request named no tenant
    price_version TEXT NOT NULL,
    currency TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    cpu_ns INTEGER NOT NULL,
    wall_ns INTEGER NOT NULL,
    accelerator_seconds REAL NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cpu_cost REAL NOT NULL,
    gpu_cost REAL NOT NULL,
    token_cost REAL NOT NULL,
    request_cost REAL NOT NULL,
    PRIMARY KEY (hour, team, model, version, endpoint, tenant, price_version)
);
CREATE TABLE IF NOT EXISTS process (
    hour INTEGER NOT NULL,
    process TEXT NOT NULL,            -- host:pid:start of the sampled process
    price_version TEXT NOT NULL,
    currency TEXT NOT NULL,
    cpu_core_hour REAL NOT NULL,      -- the CPU rate in force, to price idle capacity later
    cpu_ns INTEGER NOT NULL,
    wall_ns INTEGER NOT NULL,
    rss_gib_seconds REAL NOT NULL,
    cpu_cost REAL NOT NULL,
    ram_cost REAL NOT NULL,
    PRIMARY KEY (hour, process, price_version)
);
"""

_UPSERT_USAGE = """
INSERT INTO usage VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (hour, team, model, version, endpoint, tenant, price_version) DO UPDATE SET
    requests = requests + excluded.requests,
    errors = errors + excluded.errors,
    cpu_ns = cpu_ns + excluded.cpu_ns,
    wall_ns = wall_ns + excluded.wall_ns,
    accelerator_seconds = accelerator_seconds + excluded.accelerator_seconds,
    tokens_in = tokens_in + excluded.tokens_in,
    tokens_out = tokens_out + excluded.tokens_out,
    cpu_cost = cpu_cost + excluded.cpu_cost,
    gpu_cost = gpu_cost + excluded.gpu_cost,
    token_cost = token_cost + excluded.token_cost,
    request_cost = request_cost + excluded.request_cost
"""

_UPSERT_PROCESS = """
INSERT INTO process VALUES (?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (hour, process, price_version) DO UPDATE SET
    cpu_ns = cpu_ns + excluded.cpu_ns,
    wall_ns = wall_ns + excluded.wall_ns,
    rss_gib_seconds = rss_gib_seconds + excluded.rss_gib_seconds,
    cpu_cost = cpu_cost + excluded.cpu_cost,
    ram_cost = ram_cost + excluded.ram_cost
"""


def cost_db_path(settings: Settings) -> Path:
    """Where the cost database of ``settings`` lives: ``<data_dir>/cost/cost.db``."""
    return settings.data_dir / "cost" / COST_DB


def open_db(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the cost database; WAL so reports never block the writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    return conn


@dataclass(frozen=True, slots=True)
class UsageKey:
    """What one cost row is attributed to."""

    hour: int
    team: str
    model: str
    version: str
    endpoint: str
    tenant: str
    price_version: str


@dataclass(slots=True)
class _Usage:
    currency: str
    requests: int = 0
    errors: int = 0
    cpu_ns: int = 0
    wall_ns: int = 0
    accelerator_seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cpu_cost: float = 0.0
    gpu_cost: float = 0.0
    token_cost: float = 0.0
    request_cost: float = 0.0


def rss_bytes() -> int:
    """Resident memory of this process now (/proc); the peak (getrusage) where /proc is absent."""
    try:
        with Path("/proc/self/statm").open("rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class CostAttribution:
    """Prices every inference event, sums per (hour, team, model, version, endpoint, tenant).

    Register as a background sink: ``monitor.add_sink(cost)``; the Monitor's shutdown closes
    it after the queue is drained, which writes what is left. Clocks and the memory probe are
    injectable so that tests can check the arithmetic exactly.
    """

    def __init__(
        self,
        db_path: Path,
        prices: PriceTable | None = None,
        *,
        meter: Meter | None = None,
        flush_interval_s: float = 10.0,
        start: bool = True,
        clock_ns: Callable[[], int] = time.time_ns,
        cpu_clock_ns: Callable[[], int] = time.process_time_ns,
        memory_bytes: Callable[[], int] = rss_bytes,
    ) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self.prices = prices or default_price_table()
        self._conn = open_db(db_path)
        self._clock_ns = clock_ns
        self._cpu_clock_ns = cpu_clock_ns
        self._memory_bytes = memory_bytes
        self._process = f"{socket.gethostname()}:{os.getpid()}:{clock_ns() // 1_000_000_000}"
        self._lock = threading.Lock()  # guards _pending
        self._io_lock = threading.Lock()  # one flush at a time, and the connection
        self._pending: dict[UsageKey, _Usage] = {}
        self._last_wall_ns = clock_ns()
        self._last_cpu_ns = cpu_clock_ns()
        self.events = 0
        self.flush_failures = 0
        self._closed = False
        self._instruments = _Instruments(meter, cpu_clock_ns) if meter is not None else None
        self._stop = threading.Event()
        self._interval = flush_interval_s
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="infertrail-cost", daemon=True)
            self._thread.start()

    @classmethod
    def open(cls, settings: Settings, *, meter: Meter | None = None) -> CostAttribution:
        """The sink for ``settings``: its price table file (or the built-in one) and database."""
        path = settings.cost_prices_file
        prices = load_price_table(path) if path is not None else default_price_table()
        return cls(
            cost_db_path(settings),
            prices,
            meter=meter,
            flush_interval_s=settings.cost_flush_interval_s,
        )

    # -- the sink (Monitor worker thread) ------------------------------------------------------
    def __call__(self, ev: InferenceEvent) -> None:
        """Price ``ev`` and add it to its row; counters for ``/metrics`` too."""
        if self._closed:
            return
        version = self.prices.at(ev.start_time_ns)
        cpu_s = ev.cpu_ns / 1e9
        accel = ev.accelerator_seconds or 0.0
        gen = ev.generation
        t_in, t_out = ev.tokens_in, ev.tokens_out
        if gen is not None:  # the GenAI layer mirrors its counts; a hand-built event may not
            t_in = gen.input_tokens if t_in is None else t_in
            t_out = gen.output_tokens if t_out is None else t_out
        t_in, t_out = t_in or 0, t_out or 0
        cost = version.cost_of(
            ev.model.name,
            provider=None if gen is None else gen.provider,
            requests=1,
            cpu_seconds=cpu_s,
            accelerator_seconds=accel,
            tokens_in=t_in,
            tokens_out=t_out,
        )
        key = UsageKey(
            hour=ev.start_time_ns // HOUR_NS * 3600,
            team=ev.team,
            model=ev.model.name,
            version=ev.model.version,
            endpoint=ev.endpoint,
            tenant=ev.tenant or "",
            price_version=version.version,
        )
        with self._lock:
            u = self._pending.get(key)
            if u is None:
                u = self._pending[key] = _Usage(version.currency)
            u.requests += 1
            u.errors += ev.status == "error"
            u.cpu_ns += ev.cpu_ns
            u.wall_ns += ev.duration_ns
            u.accelerator_seconds += accel
            u.tokens_in += t_in
            u.tokens_out += t_out
            u.cpu_cost += cost.cpu
            u.gpu_cost += cost.gpu
            u.token_cost += cost.tokens
            u.request_cost += cost.request
            self.events += 1
        if self._instruments is not None:
            series = (
                key.team,
                key.model,
                key.version,
                key.endpoint,
                key.price_version,
                version.currency,
            )
            self._instruments.record(series, cpu_s, accel, t_in, t_out, cost)

    # -- the flusher -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._write()
            except sqlite3.Error:
                self.flush_failures += 1
                _log.exception("cost flush failed; the sums stay in memory for the next one")

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Sample the process and write every pending sum (one transaction; sink contract).

        ``timeout_s`` is SQLite's to respect (its busy timeout); always True once written.
        """
        self._write()
        return True

    def _write(self) -> None:
        with self._io_lock:
            now, cpu = self._clock_ns(), self._cpu_clock_ns()
            process_rows = self._process_rows(self._last_wall_ns, now, cpu - self._last_cpu_ns)
            with self._lock:
                pending, self._pending = self._pending, {}
            try:
                with self._conn:
                    self._conn.executemany(_UPSERT_USAGE, _usage_rows(pending.items()))
                    self._conn.executemany(_UPSERT_PROCESS, process_rows)
            except sqlite3.Error:
                with self._lock:  # put them back: nothing is lost to a transient failure
                    for key, u in pending.items():
                        _merge(self._pending, key, u)
                raise
            self._last_wall_ns, self._last_cpu_ns = now, cpu

    def _process_rows(self, t0: int, t1: int, cpu_ns: int) -> list[tuple[object, ...]]:
        """The process's CPU, wall time and memory over [t0, t1), split by hour and version."""
        if t1 <= t0:
            return []
        rss_gib = self._memory_bytes() / 2**30
        rows: list[tuple[object, ...]] = []
        start = t0
        while start < t1:
            hour_end = (start // HOUR_NS + 1) * HOUR_NS
            version = self.prices.at(start)
            # A price change inside the hour ends the piece too: each piece has one version.
            end = min(t1, hour_end, self.prices.next_change(start) or t1)
            share = (end - start) / (t1 - t0)
            piece_cpu = round(cpu_ns * share)
            wall = end - start
            gib_s = rss_gib * wall / 1e9
            rows.append(
                (
                    start // HOUR_NS * 3600,
                    self._process,
                    version.version,
                    version.currency,
                    version.cpu_core_hour,
                    piece_cpu,
                    wall,
                    gib_s,
                    piece_cpu / 1e9 / 3600 * version.cpu_core_hour,
                    gib_s / 3600 * version.ram_gib_hour,
                )
            )
            start = end
        return rows

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the flusher, write what is pending, close the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        try:
            self._write()
        finally:
            self._conn.close()


def _merge(into: dict[UsageKey, _Usage], key: UsageKey, u: _Usage) -> None:
    have = into.get(key)
    if have is None:
        into[key] = u
        return
    for name in _Usage.__slots__:
        if name != "currency":
            setattr(have, name, getattr(have, name) + getattr(u, name))


def _usage_rows(items: Iterable[tuple[UsageKey, _Usage]]) -> Iterable[tuple[object, ...]]:
    for k, u in items:
        yield (
            k.hour,
            k.team,
            k.model,
            k.version,
            k.endpoint,
            k.tenant,
            k.price_version,
            u.currency,
            u.requests,
            u.errors,
            u.cpu_ns,
            u.wall_ns,
            u.accelerator_seconds,
            u.tokens_in,
            u.tokens_out,
            u.cpu_cost,
            u.gpu_cost,
            u.token_cost,
            u.request_cost,
        )


# Cumulative totals per metric series: (team, model, version, endpoint, price version, currency).
_SeriesKey = tuple[str, str, str, str, str, str]
_CPU, _ACCEL, _TOKENS_IN, _TOKENS_OUT, _COST_CPU, _COST_GPU, _COST_TOKENS, _COST_REQUEST = range(8)


class _Instruments:
    """The ``infertrail.cost.*`` counters, on the service's meter (and so on ``/metrics``).

    Observable counters over cumulative sums kept here: a synchronous counter ``add`` costs
    ~20 us in the SDK (attribute checks and hashing), several per event; a dict update is ~1 us.
    """

    def __init__(self, meter: Meter, cpu_clock_ns: Callable[[], int]) -> None:
        self._lock = threading.Lock()
        self._totals: dict[_SeriesKey, list[float]] = {}

        def process_cpu(_options: CallbackOptions) -> list[Observation]:
            return [Observation(cpu_clock_ns() / 1e9)]

        for name, unit, description, callback in (
            (
                METRIC_CPU,
                c.UNIT_SECONDS,
                "Request-thread CPU time of inferences, attributed.",
                self._series(_CPU),
            ),
            (
                METRIC_ACCELERATOR,
                c.UNIT_SECONDS,
                "Accelerator (GPU) seconds of inferences.",
                self._series(_ACCEL),
            ),
            (METRIC_TOKENS, c.UNIT_TOKEN, "Input and output tokens of inferences.", self._tokens),
            (
                METRIC_AMOUNT,
                c.UNIT_CURRENCY_UNIT,
                "Attributed cost of inferences by component, in the price currency.",
                self._amount,
            ),
            (
                METRIC_PROCESS_CPU,
                c.UNIT_SECONDS,
                "CPU time of the whole process (every thread): attributed + shared.",
                process_cpu,
            ),
        ):
            meter.create_observable_counter(
                name, callbacks=[callback], unit=unit, description=description
            )

    def record(
        self,
        key: _SeriesKey,
        cpu_s: float,
        accel: float,
        t_in: int,
        t_out: int,
        cost: CostBreakdown,
    ) -> None:
        with self._lock:
            t = self._totals.get(key)
            if t is None:
                t = self._totals[key] = [0.0] * 8
            t[_CPU] += cpu_s
            t[_ACCEL] += accel
            t[_TOKENS_IN] += t_in
            t[_TOKENS_OUT] += t_out
            t[_COST_CPU] += cost.cpu
            t[_COST_GPU] += cost.gpu
            t[_COST_TOKENS] += cost.tokens
            t[_COST_REQUEST] += cost.request

    def _snapshot(self) -> list[tuple[_SeriesKey, list[float]]]:
        with self._lock:
            return [(k, list(v)) for k, v in self._totals.items()]

    @staticmethod
    def _attrs(key: _SeriesKey) -> dict[str, str]:
        team, model, version, endpoint, _, _ = key
        return {c.TEAM: team, c.MODEL_NAME: model, c.MODEL_VERSION: version, c.ENDPOINT: endpoint}

    def _series(self, index: int) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(_options: CallbackOptions) -> list[Observation]:
            return [Observation(t[index], self._attrs(k)) for k, t in self._snapshot() if t[index]]

        return observe

    def _tokens(self, _options: CallbackOptions) -> list[Observation]:
        out = []
        for k, t in self._snapshot():
            for direction, index in (("input", _TOKENS_IN), ("output", _TOKENS_OUT)):
                if t[index]:
                    out.append(
                        Observation(t[index], {**self._attrs(k), c.TOKEN_DIRECTION: direction})
                    )
        return out

    def _amount(self, _options: CallbackOptions) -> list[Observation]:
        out = []
        for k, t in self._snapshot():
            money = {**self._attrs(k), c.COST_PRICE_VERSION: k[4], c.COST_CURRENCY: k[5]}
            for component, index in (
                ("cpu", _COST_CPU),
                ("gpu", _COST_GPU),
                ("tokens", _COST_TOKENS),
                ("request", _COST_REQUEST),
            ):
                if t[index]:
                    out.append(Observation(t[index], {**money, c.COST_COMPONENT: component}))
        return out
