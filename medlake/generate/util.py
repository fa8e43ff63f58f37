"""Small deterministic helpers shared by the generator modules.

All randomness flows from a `random.Random` passed in by the caller and all
dates are anchored on REF_DATETIME, never on the wall clock: that is what makes
two runs with the same seed byte-identical.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta, timezone

REF_DATE = date(2026, 1, 1)
REF_DATETIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from the run's rng (uuid4() would be non-deterministic)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def new_uid(rng: random.Random) -> str:
    """A DICOM UID under the 2.25 root (UUID-derived, digits and dots, at most 44 chars)."""
    return f"2.25.{uuid.UUID(int=rng.getrandbits(128), version=4).int}"


def fhir_datetime(dt: datetime) -> str:
    """FHIR dateTime/instant with an explicit UTC offset, to the second."""
    return dt.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def fhir_date(d: date | datetime) -> str:
    """FHIR date (YYYY-MM-DD)."""
    return (d.date() if isinstance(d, datetime) else d).isoformat()


def dicom_date(d: date | datetime) -> str:
    """DICOM DA (YYYYMMDD)."""
    return (d.date() if isinstance(d, datetime) else d).strftime("%Y%m%d")


def dicom_time(dt: datetime) -> str:
    """DICOM TM (HHMMSS)."""
    return dt.strftime("%H%M%S")


def note_date(d: date | datetime) -> str:
    """US-style date as clinicians write it in notes (MM/DD/YYYY)."""
    return (d.date() if isinstance(d, datetime) else d).strftime("%m/%d/%Y")


def last_updated(rng: random.Random, dt: datetime) -> str:
    """meta.lastUpdated: shortly after the event it records, never after the reference date."""
    stamp = dt + timedelta(minutes=rng.randint(5, 72 * 60))
    return fhir_datetime(min(stamp, REF_DATETIME - timedelta(seconds=1)))


def before_ref(dt: datetime) -> datetime:
    """Clamp a derived time so nothing is dated on or after the reference date."""
    return min(dt, REF_DATETIME - timedelta(minutes=1))
