"""A C2SP witness (c2sp.org/tlog-witness) for tests and for teams that run their own.

``infertrail witness serve`` cosigns (cosignature/v1) a log's checkpoints when they extend the
newest one it cosigned, with its own key and durable state, and refuses rollbacks and forks.
:mod:`~infertrail.witness.service` decides (no HTTP), :mod:`~infertrail.witness.state` keeps
the state, :mod:`~infertrail.witness.logs` the logs it follows, :mod:`~infertrail.witness.app`
serves it (the ``server`` extra). The log's side (the client) is
:mod:`infertrail.runtime.witnesses`; the formats are in :mod:`infertrail.audit.cosignature` and
:mod:`infertrail.audit.witness_protocol`.
"""

__all__: list[str] = []
