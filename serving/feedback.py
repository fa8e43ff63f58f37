"""`gold.feedback`: clinicians' ratings of answers, appended by `POST /v1/feedback`.

Comments are free text and may carry identifiers, so they are scrubbed before they
are stored, like questions are.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pyarrow as pa

from medlake import privacy
from serving.audit import AppendLog

FEEDBACK = "gold.feedback"
RATINGS = range(1, 6)  # 1 = wrong or harmful ... 5 = correct and complete

FEEDBACK_SCHEMA = pa.schema([
    ("feedback_id", pa.string()), ("answer_id", pa.string()), ("rating", pa.int8()),
    ("comment", pa.string()), ("given_at", pa.timestamp("us", tz="UTC")),
    ("given_by", pa.string()),
])
_feedback_log = AppendLog(FEEDBACK, FEEDBACK_SCHEMA)


def give_feedback(answer_id: str, rating: int, comment: str | None, given_by: str) -> dict:
    if rating not in RATINGS:
        raise ValueError(f"rating must be 1 to 5, not {rating}")
    row = dict(feedback_id=str(uuid.uuid4()), answer_id=answer_id, rating=rating,
               comment=privacy.scrub_text(comment) if comment else None,
               given_at=datetime.now(timezone.utc), given_by=given_by)
    _feedback_log.append(row)
    return row
