"""How long a witness takes to cosign a checkpoint of a 10M-record log, consistency proof included.

Run: .venv/bin/python bench/witness_cosign.py [--quick] [--leaves N] [--rounds K] [--dir PATH]

1. A hash store of --leaves random leaf hashes (10,000,000; --quick 1,000,000) is filled in a
   temporary directory under --dir; its level files are computed by the project's C hashing
   (``node_level``), as the audit writer does. This stands in for the log: the witness only ever
   sees checkpoints and proofs, never records.
2. --rounds checkpoints (2,000) are signed at growing sizes ending at --leaves, each step a
   random 1..1,000 records (what a busy log appends between two publisher rounds), with the
   consistency proof from the previous size (the log's side, timed apart).
3. The witness (``Witness``, its state journal fdatasync'ed on the same file system) takes them
   in order, each through ``add_checkpoint`` on the request body: parse, the log's Ed25519
   signature, the proof (~2 log2(n) SHA-256), the cosignature, the durable state update. The
   target is <= 5 ms per checkpoint. Then each step alone, and the same requests over HTTP to an
   ``infertrail witness serve`` process on loopback (keep-alive client), for the round trip a
   log sees.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from infertrail.audit.checkpoint import Checkpoint, NoteSigner, NoteVerifier, sign_checkpoint
from infertrail.audit.cosignature import CosignatureSigner
from infertrail.audit.hashstore import HashStore
from infertrail.audit.keys import write_key_pair
from infertrail.audit.merkle import consistency_proof_by, verify_consistency
from infertrail.audit.recovery import tree_root
from infertrail.audit.witness_protocol import AddCheckpoint
from infertrail.witness.logs import KnownLogs
from infertrail.witness.service import Witness
from infertrail.witness.state import LogState, WitnessState

ORIGIN = "bench.infertrail/witnessed"
TARGET_MS = 5.0


def cpu_model() -> str:
    """The CPU model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fill(store: HashStore, n: int) -> float:
    """Append random leaf hashes up to ``n``; seconds taken."""
    start = time.perf_counter()
    while store.size < n:
        count = min(1 << 16, n - store.size)
        data = os.urandom(32 * count)
        store.append([data[i : i + 32] for i in range(0, len(data), 32)])
    return time.perf_counter() - start


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{statistics.median(ordered) * 1e3:.3f} | {p99 * 1e3:.3f} | {ordered[-1] * 1e3:.3f}"


def timed(step: Callable[[int], object], count: int) -> list[float]:
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        step(i)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M leaves, 300 rounds")
    parser.add_argument("--leaves", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--http-rounds", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    n = args.leaves or (1_000_000 if args.quick else 10_000_000)
    rounds = args.rounds or (300 if args.quick else 2_000)
    http_rounds = min(args.http_rounds, rounds)
    rng = random.Random(14)
    load0 = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="witness-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        store = HashStore(root / "tree")
        built = fill(store, n)
        skey, _ = NoteSigner.generate(ORIGIN)
        signer = NoteSigner.from_key(skey)
        steps = [rng.randint(1, 1_000) for _ in range(rounds)]
        sizes = [n - sum(steps)]
        for step in steps:
            sizes.append(sizes[-1] + step)
        checkpoints = [Checkpoint(ORIGIN, s, tree_root(store, s)) for s in sizes]
        notes = [sign_checkpoint(cp, signer) for cp in checkpoints]
        t0 = time.perf_counter()
        proofs = [
            consistency_proof_by(store.subtree_root, sizes[i], sizes[i + 1]) for i in range(rounds)
        ]
        proof_s = (time.perf_counter() - t0) / rounds
        bodies = [
            AddCheckpoint(sizes[i], tuple(proofs[i]), notes[i + 1]).encode() for i in range(rounds)
        ]
        lengths = sorted(len(p) for p in proofs)

        # The witness in-process, end to end on each request body.
        wkey, wvkey = CosignatureSigner.generate("witness.bench/w1")
        cosigner = CosignatureSigner.from_key(wkey)
        logs = KnownLogs.of([signer.verifier_key])
        state = WitnessState(root / "witness.state")
        witness = Witness(cosigner, logs, state)
        first = witness.add_checkpoint(AddCheckpoint(0, (), notes[0]).encode())
        assert first.status == 200, first.body

        def add(i: int) -> None:
            answer = witness.add_checkpoint(bodies[i])
            if answer.status != 200:
                raise SystemExit(f"round {i}: {answer.status} {answer.body!r}")

        end_to_end = timed(add, rounds)
        state.close()

        # Each step alone, on the same data.
        verifier = NoteVerifier.from_key(signer.verifier_key)
        parse = timed(
            lambda i: (AddCheckpoint.parse(bodies[i]), verifier.verify(notes[i + 1])), rounds
        )
        consistency = timed(
            lambda i: verify_consistency(
                sizes[i], sizes[i + 1], checkpoints[i].root, checkpoints[i + 1].root, proofs[i]
            ),
            rounds,
        )
        texts = [note[: note.rindex(b"\n\n") + 1] for note in notes]
        cosign = timed(lambda i: cosigner.cosign(texts[i + 1], 1_800_000_000 + i), rounds)
        journal = WitnessState(root / "journal-only.state")
        persist = timed(
            lambda i: journal.put(
                LogState(ORIGIN, sizes[i + 1], checkpoints[i + 1].root, notes[i + 1])
            ),
            rounds,
        )
        journal.close()

        # Over HTTP: a witness process on loopback, a keep-alive client (the log's view).
        key_file = root / "w-http.key"
        write_key_pair(key_file, wkey, wvkey)
        client = httpx.Client(timeout=5)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infertrail",
                "witness",
                "serve",
                "--key-file",
                str(key_file),
                "--state-file",
                str(root / "http.state"),
                "--port",
                str(port),
                "--log",
                signer.verifier_key,
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/add-checkpoint"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get(f"http://127.0.0.1:{port}/checkpoint/x")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the witness process did not start") from None
                    time.sleep(0.05)
            assert (
                client.post(url, content=AddCheckpoint(0, (), notes[0]).encode()).status_code == 200
            )

            def post(i: int) -> None:
                response = client.post(url, content=bodies[i])
                if response.status_code != 200:
                    raise SystemExit(f"HTTP round {i}: {response.status_code} {response.text}")

            over_http = timed(post, http_rounds)
        finally:
            client.close()
            server.terminate()
            server.wait(timeout=10)
        fs = subprocess.run(
            ["stat", "-f", "-c", "%T", str(root)], capture_output=True, text=True, check=False
        ).stdout.strip()

    load1 = os.getloadavg()
    print(f"# witness_cosign: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")  # fmt: skip
    print(f"# load average {load0[0]:.2f} -> {load1[0]:.2f}; state on {fs}; tree of {n:,} "
          f"leaves filled in {built:.1f} s")  # fmt: skip
    print(f"# {rounds} checkpoints from size {sizes[0]:,} to {sizes[-1]:,}, steps 1..1,000; proof "
          f"hashes min {lengths[0]} median {lengths[len(lengths) // 2]} max {lengths[-1]}; the "
          f"log builds a proof in {proof_s * 1e3:.3f} ms (hash store, levels)")  # fmt: skip
    print()
    print("| step | median ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    print(f"| **add-checkpoint, in-process, end to end** (target <= {TARGET_MS:g} ms) | "
          f"{ms(end_to_end)} |")  # fmt: skip
    print(f"| parse the request + verify the log's signature | {ms(parse)} |")
    print(f"| verify the consistency proof | {ms(consistency)} |")
    print(f"| cosign (cosignature/v1, Ed25519) | {ms(cosign)} |")
    print(f"| persist the state (journal append + fdatasync) | {ms(persist)} |")
    print(f"| add-checkpoint over HTTP on loopback ({http_rounds} rounds, keep-alive) | "
          f"{ms(over_http)} |")  # fmt: skip
    verdict = "met" if statistics.median(end_to_end) * 1e3 <= TARGET_MS else "MISSED"
    print(f"\ntarget <= {TARGET_MS:g} ms per cosigned checkpoint (median, in-process): {verdict}")


if __name__ == "__main__":
    main()
