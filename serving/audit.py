"""Durable, append-only event tables written by the RAG service (`gold.rag_audit`,
`gold.feedback`).

Each event is a Delta append that has committed before the request returns. Under
concurrent load, requests that arrive while a commit is in flight are committed
together in the next one (group commit): one Delta version per batch instead of one
per request, so twenty clients do not queue behind twenty commits.
"""
from __future__ import annotations

import threading
import time

import pyarrow as pa
from deltalake.exceptions import CommitFailedError

from medlake import lake


class _Pending:
    __slots__ = ("row", "done", "error")

    def __init__(self, row: dict):
        self.row = row
        self.done = threading.Event()
        self.error: BaseException | None = None


class AppendLog:
    """Append rows of `schema` to Delta `table`; `append` returns once committed."""

    def __init__(self, table: str, schema: pa.Schema):
        self.table = table
        self.schema = schema
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def append(self, row: dict) -> None:
        item = _Pending(row)
        with self._queue_lock:
            self._queue.append(item)
        with self._commit_lock:
            # Whoever holds the commit lock writes everything queued so far; a request
            # whose row went out in someone else's commit finds itself done here.
            if not item.done.is_set():
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    self._write([p.row for p in batch])
                except BaseException as e:
                    for p in batch:
                        p.error = e
                finally:
                    for p in batch:
                        p.done.set()
        if item.error is not None:
            raise item.error

    def _write(self, rows: list[dict], retries: int = 5) -> None:
        data = pa.Table.from_pylist(rows, self.schema)
        for attempt in range(retries):
            try:
                # schema_mode="merge": an older table gains the columns added since.
                lake.append(self.table, data, schema_mode="merge")
                return
            except CommitFailedError:
                # Another process (a second server, a batch run) committed first.
                if attempt == retries - 1:
                    raise
                time.sleep(0.05 * 2 ** attempt)
