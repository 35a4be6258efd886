"""Consumer-facing reason texts for the credit model, versioned: attribute (and value) -> text.

Reg B (12 CFR 1002.9(b)(2)) asks for the *specific, principal* reasons of an adverse action,
relating to factors actually scored. The credit model picks the attributes with the most adverse
attributions; this table turns each into a stable code and a sentence a consumer can read. For a
categorical attribute the key is the applicant's own code (so the text says what was scored:
"Checking account status: balance below 0 DM"); for a numerical one it is the direction in which
the applicant's value differs from the training average ("high" or "low").

Any change to a code or a text is a new table: bump :data:`REASON_CODES_VERSION` (a unit test pins
the digest of each version, so an edit cannot slip through unversioned). Every response and audit
record names the version it used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["REASON_CODES_VERSION", "ReasonText", "reason_for", "reason_table", "table_digest"]

REASON_CODES_VERSION = "credit-reasons/1"


@dataclass(frozen=True, slots=True)
class ReasonText:
    """A reason code (stable identifier, e.g. ``CHK-A11``) and its consumer-facing text."""

    code: str
    text: str


# attribute -> (code prefix, factor wording, {applicant's value or direction: value wording})
_CATEGORICAL: dict[str, tuple[str, str, dict[str, str]]] = {
    "checking_status": (
        "CHK",
        "Checking account status",
        {
            "A11": "balance below 0 DM",
            "A12": "balance between 0 and 200 DM",
            "A13": "balance of 200 DM or more, or salary paid in for at least a year",
            "A14": "no checking account",
        },
    ),
    "credit_history": (
        "HIST",
        "Credit history",
        {
            "A30": "no credits taken, or all credits paid back duly",
            "A31": "all credits at this bank paid back duly",
            "A32": "existing credits paid back duly till now",
            "A33": "delay in paying off credits in the past",
            "A34": "critical account, or credits existing at other banks",
        },
    ),
    "purpose": (
        "PURP",
        "Purpose of the credit",
        {
            "A40": "new car",
            "A41": "used car",
            "A42": "furniture or equipment",
            "A43": "radio or television",
            "A44": "domestic appliances",
            "A45": "repairs",
            "A46": "education",
            "A48": "retraining",
            "A49": "business",
            "A410": "other purpose",
        },
    ),
    "savings": (
        "SAV",
        "Savings account or bonds",
        {
            "A61": "less than 100 DM",
            "A62": "between 100 and 500 DM",
            "A63": "between 500 and 1000 DM",
            "A64": "1000 DM or more",
            "A65": "unknown, or no savings account",
        },
    ),
    "employment_since": (
        "EMP",
        "Present employment",
        {
            "A71": "unemployed",
            "A72": "employed for less than 1 year",
            "A73": "employed for 1 to 4 years",
            "A74": "employed for 4 to 7 years",
            "A75": "employed for 7 years or more",
        },
    ),
    "personal_status_sex": (
        "PSTAT",
        "Personal status and sex",
        {
            "A91": "male, divorced or separated",
            "A92": "female, divorced, separated or married",
            "A93": "male, single",
            "A94": "male, married or widowed",
        },
    ),
    "other_debtors": (
        "DEBT",
        "Other debtors or guarantors",
        {"A101": "none", "A102": "co-applicant", "A103": "guarantor"},
    ),
    "property": (
        "PROP",
        "Property",
        {
            "A121": "real estate",
            "A122": "building society savings agreement or life insurance",
            "A123": "car or other property",
            "A124": "unknown, or no property",
        },
    ),
    "other_installment_plans": (
        "PLAN",
        "Other instalment plans",
        {"A141": "at a bank", "A142": "at stores", "A143": "none"},
    ),
    "housing": ("HOUS", "Housing", {"A151": "rent", "A152": "own", "A153": "for free"}),
    "job": (
        "JOB",
        "Job",
        {
            "A171": "unemployed or unskilled, non-resident",
            "A172": "unskilled, resident",
            "A173": "skilled employee or official",
            "A174": "management, self-employed, or highly qualified employee or officer",
        },
    ),
    "telephone": (
        "TEL",
        "Telephone",
        {"A191": "none", "A192": "registered under the applicant's name"},
    ),
    "foreign_worker": ("FRGN", "Foreign worker", {"A201": "yes", "A202": "no"}),
}

# "high"/"low": the applicant's value is above/below the average of the training applicants.
_NUMERICAL: dict[str, tuple[str, str, str, str]] = {
    "duration_months": (
        "DUR",
        "Duration of credit",
        "longer than typical",
        "shorter than typical",
    ),
    "credit_amount": ("AMT", "Amount of credit", "higher than typical", "lower than typical"),
    "installment_rate": (
        "RATE",
        "Instalment as a share of disposable income",
        "higher than typical",
        "lower than typical",
    ),
    "residence_since": (
        "RES",
        "Time at present residence",
        "longer than typical",
        "shorter than typical",
    ),
    "age_years": ("AGE", "Age", "older than typical applicants", "younger than typical applicants"),
    "existing_credits": (
        "CRED",
        "Number of existing credits at this bank",
        "more than typical",
        "fewer than typical",
    ),
    "people_liable": (
        "DEPS",
        "Number of people the applicant provides maintenance for",
        "more than typical",
        "fewer than typical",
    ),
}


def _build() -> Mapping[tuple[str, str], ReasonText]:
    table: dict[tuple[str, str], ReasonText] = {}
    for attribute, (prefix, factor, values) in _CATEGORICAL.items():
        for value, wording in values.items():
            table[attribute, value] = ReasonText(f"{prefix}-{value}", f"{factor}: {wording}")
    for attribute, (prefix, factor, high, low) in _NUMERICAL.items():
        table[attribute, "high"] = ReasonText(f"{prefix}-HIGH", f"{factor}: {high}")
        table[attribute, "low"] = ReasonText(f"{prefix}-LOW", f"{factor}: {low}")
    return MappingProxyType(table)


_TABLE = _build()


def reason_table() -> Mapping[tuple[str, str], ReasonText]:
    """The whole table of this version, keyed by (attribute, applicant's code or high/low)."""
    return _TABLE


def reason_for(attribute: str, value: str) -> ReasonText:
    """The reason for ``attribute`` at ``value`` (a categorical code, or "high"/"low")."""
    try:
        return _TABLE[attribute, value]
    except KeyError:
        known = sorted(v for a, v in _TABLE if a == attribute)
        raise LookupError(
            f"no reason text for attribute {attribute!r} with value {value!r} in "
            f"{REASON_CODES_VERSION}; known values: {known or 'none (unknown attribute)'}"
        ) from None


def table_digest() -> str:
    """SHA-256 of the table's content: identifies exactly which texts a version holds."""
    rows = sorted([a, v, r.code, r.text] for (a, v), r in _TABLE.items())
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
