"""Tamper-evident audit trail: canonical records, Merkle log, checkpoints, ledger, lake."""
