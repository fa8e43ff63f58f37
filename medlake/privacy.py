"""De-identification: keyed pseudonyms, per-person date shifts, free-text scrubbing.

One implementation serves every modality (FHIR, DICOM, VCF) and every engine (Python
assets, and dbt through DuckDB functions registered by the project's dbt plugin), so
the same person gets the same key and the same date shift everywhere.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date, timedelta

from medlake.config import get_settings


def _digest(purpose: str, value: str, key: bytes | None = None) -> bytes:
    key = key if key is not None else get_settings().pseudonym_key
    return hmac.new(key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()


def person_key(mrn: str | None, key: bytes | None = None) -> str | None:
    """HMAC-SHA256 pseudonym of a patient's medical record number (hex, 32 chars)."""
    if mrn is None or mrn == "":
        return None
    return _digest("person", mrn.strip(), key).hex()[:32]


def pseudonym(kind: str, value: str | None, key: bytes | None = None) -> str | None:
    """Stable pseudonym for any other identifier (a resource id, a UID)."""
    if value is None or value == "":
        return None
    return _digest(kind, value, key).hex()[:32]


def derived_uid(uid: str | None, key: bytes | None = None) -> str | None:
    """A DICOM UID replaced by a keyed, consistent one (PS3.15 "U" action): the same
    source UID maps to the same new UID in every table and run, as an OID under the
    UUID-derived root 2.25 (PS3.5 B.2), so it stays a valid UID (<= 64 chars)."""
    if uid is None or uid.strip() == "":
        return None
    return "2.25." + str(int.from_bytes(_digest("uid", uid.strip(), key)[:16], "big"))


def date_shift_days(mrn: str | None, max_days: int | None = None,
                    key: bytes | None = None) -> int:
    """A per-person offset in [-max_days, max_days] \\ {0}, stable across modalities."""
    max_days = get_settings().date_shift_days if max_days is None else max_days
    if not mrn or max_days <= 0:
        return 0
    n = int.from_bytes(_digest("dateshift", mrn.strip(), key)[:8], "big")
    v = n % (2 * max_days)
    return v - max_days if v < max_days else v - max_days + 1


# Patterns for identifiers that have a recognisable shape. Names and addresses have
# none, so callers pass the person's known values too (from bronze, where they live).
_EMAIL = (re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"), "[EMAIL]")
_PATTERNS = [
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[SSN]"),
    (re.compile(r"\bMRN[:#\s]*[A-Z0-9-]{4,}\b", re.I), "[MRN]"),
    # Accession numbers identify the study (and so the patient) at the imaging site.
    (re.compile(r"\b(Accession(?:\s+(?:No\.?|Number|#))?)[:#\s]+[A-Z0-9-]{4,}\b", re.I),
     r"\1: [ACCESSION]"),
    (re.compile(r"(?:\+?1[-.\s]?)?\(?\b\d{3}\)?[-.\s]\d{3}[-.\s]\d{4}\b(?:\s*x\d+)?"), "[PHONE]"),
    (re.compile(r"\b\d{5}(?:-\d{4})?\b"), "[ZIP]"),
    # Clinicians' names identify the care setting; notes name them after a title.
    # Within one line: a name never continues on the next.
    (re.compile(r"\b(Dr\.?|Doctor|Nurse)[ \t]+[A-Z][a-z'-]+(?:[ \t]+[A-Z]\.)?(?:[ \t]+[A-Z][a-z'-]+)?"),
     r"\1 [CLINICIAN]"),
]
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_US_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTH = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
# "March 2, 1980" and "2 March 1980": dictated notes write dates out.
_WORD_DATES = [(re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I), (1, 2, 3)),
               (re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+{_MONTH}\s+(\d{{4}})\b", re.I), (2, 1, 3))]


def _shift_match(m: re.Match, days: int, iso: bool, order=None) -> str:
    try:
        if order:
            month, day, year = (m[i] for i in order)
            d = date(int(year), _MONTHS.index(month[:3].lower()) + 1, int(day))
        elif iso:
            d = date(int(m[1]), int(m[2]), int(m[3]))
        else:
            d = date(int(m[3]), int(m[1]), int(m[2]))
    except ValueError:
        return "[DATE]"
    return (d + timedelta(days=days)).isoformat()


def scrub_text(text: str | None, known: list[str] | None = None, days: int = 0) -> str | None:
    """Remove identifiers from free text.

    `known` holds the person's own identifier values (names, MRN, address parts...):
    each is replaced wherever it appears, case-insensitively and as a whole word.
    Shaped identifiers (SSN, phone, e-mail, ZIP, MRN) are replaced by tags, and dates
    are shifted by `days` so intervals in the narrative stay true.
    """
    if text is None:
        return None
    # E-mail first (a name redacted inside an address would leave the rest of it),
    # then the person's own values (a street line before its house number is tagged
    # as a ZIP), then the remaining shaped identifiers.
    out = _EMAIL[0].sub(_EMAIL[1], text)
    for value in sorted({k.strip() for k in known or [] if k and len(k.strip()) >= 2},
                        key=len, reverse=True):
        out = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "[REDACTED]", out, flags=re.I)
    for pattern, tag in _PATTERNS:
        out = pattern.sub(tag, out)
    out = _ISO_DATE.sub(lambda m: _shift_match(m, days, True), out)
    out = _US_DATE.sub(lambda m: _shift_match(m, days, False), out)
    for pattern, order in _WORD_DATES:
        out = pattern.sub(lambda m, o=order: _shift_match(m, days, False, o), out)
    return out
