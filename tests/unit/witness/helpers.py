"""A small in-memory log for witness tests: its checkpoints and consistency proofs."""

from __future__ import annotations

from dataclasses import dataclass, field

from infertrail.audit.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from infertrail.audit.cosignature import CosignatureSigner
from infertrail.audit.merkle import consistency_proof, leaf_hash, root
from infertrail.audit.witness_protocol import AddCheckpoint

ORIGIN = "log.test/witnessed"


def new_signer(origin: str = ORIGIN) -> NoteSigner:
    return NoteSigner.from_key(NoteSigner.generate(origin)[0])


def new_witness(name: str = "witness.test/w1") -> CosignatureSigner:
    return CosignatureSigner.from_key(CosignatureSigner.generate(name)[0])


@dataclass
class MemoryLog:
    """Leaves ``record-0, record-1, ...`` (or a fork's, from ``fork_at``), signed by ``signer``."""

    signer: NoteSigner = field(default_factory=new_signer)
    fork_at: int | None = None  # leaves from here on differ: another history, same key

    def leaves(self, size: int) -> list[bytes]:
        return [
            leaf_hash(
                (b"fork-%d" if self.fork_at is not None and i >= self.fork_at else b"record-%d") % i
            )
            for i in range(size)
        ]

    def checkpoint(self, size: int) -> bytes:
        cp = Checkpoint(self.signer.name, size, root(self.leaves(size)))
        return sign_checkpoint(cp, self.signer)

    def request(self, old: int, size: int) -> bytes:
        proof = consistency_proof(self.leaves(size), old) if 0 < old < size else []
        return AddCheckpoint(old, tuple(proof), self.checkpoint(size)).encode()
