"""Which keyring purposes rotate every month, and for how long each month's key is kept.

Two kinds of key link what is written in a month to what it is about, and both are period
keys (see :mod:`infertrail.keyring`), so that retention can destroy a month's keys once
everything written under them has expired:

- ``input-hmac``: the key of each decision record's ``input_hmac``, kept for the audit
  retention class (``audit_retention_class``) after its month;
- ``kek``: the key-encryption key of the raw-payload data keys created in its month, kept for
  ``raw_payloads_retention_days`` after its month.

The subject key (``subject-hmac``) is not periodic: a subject keeps its pseudonym across months
(docs/retention.md says what that means for expired records).
"""

from __future__ import annotations

import math

from infertrail.audit.record import retention_policy
from infertrail.config import Settings
from infertrail.keyring import Keyring
from infertrail.privacy.crypto import KEK_PURPOSE

__all__ = ["INPUT_KEY_PURPOSE", "open_keyring", "periodic_purposes"]

INPUT_KEY_PURPOSE = "input-hmac"


def periodic_purposes(settings: Settings) -> dict[str, int]:
    """The periodic purposes and the days each month's key is kept after the month ends."""
    return {
        INPUT_KEY_PURPOSE: retention_policy(settings.audit_retention_class).days,
        KEK_PURPOSE: math.ceil(settings.raw_payloads_retention_days),
    }


def open_keyring(settings: Settings) -> Keyring:
    """The keyring of ``settings`` with its period keys (what a service writes under)."""
    return Keyring(settings.keyring_file, periodic=periodic_purposes(settings))
