"""The local label journal: every label is written here before it is sent, and sent exactly once.

An expert's labels are the scarce resource of active learning, so none may be
lost to a crash of the client, a network error or a server restart, and none
may be stored twice because a post was retried. The journal is one SQLite file
per user (``VOCLOUD_JOURNAL``, else ``$XDG_STATE_HOME/vocloud/journal.sqlite``,
else ``~/.local/state/vocloud/journal.sqlite``; WAL, synchronous writes) with
labels grouped in *batches*. Each batch has a random key (uuid4) that is sent as
the ``Idempotency-Key`` of its post, so a post whose answer was lost is simply
sent again: the server recognises the key, stores nothing and replays its first
answer.

A batch goes through these states:

``open``
    Labels are still being added by one labeller process (its PID is kept), and
    may be taken back (undo). Never sent: a batch must not change once a post
    of it may have reached the server, or its retry would be a different body
    under the same key. Open batches of a process that died are sealed by the
    next `Journal.seal`.
``pending``
    Sealed, waiting to be sent (also after a failed try).
``sent``
    The server answered 2xx; its answer is kept.
``refused``
    The server refused it with a 4xx that retrying cannot cure (an unknown id or
    class, a deleted session); its message is kept and shown, and it is not
    retried.

Network errors, 5xx, 401, 408, 409 (the same key still being handled), 425 and
429 leave a batch pending for the next `Journal.flush`.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import unquote

import requests

from .errors import VocloudError
from .labels import LabelRecord

__all__ = [
    "JOURNAL_ENV",
    "Batch",
    "BatchState",
    "FlushReport",
    "Journal",
    "JournalEntry",
    "LabelPoster",
    "journal_path",
    "session_url",
]

JOURNAL_ENV = "VOCLOUD_JOURNAL"
"""Environment variable naming the journal file."""

RETRIED_STATUSES = frozenset({401, 408, 409, 425, 429})
"""4xx answers after which a batch stays pending: credentials to give, or a moment to wait, cure them."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    key TEXT PRIMARY KEY,
    session_url TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    finished REAL,
    message TEXT,
    answer TEXT
);
CREATE INDEX IF NOT EXISTS batches_by_state ON batches (state, created);
CREATE INDEX IF NOT EXISTS batches_by_session ON batches (session_url, created);
CREATE TABLE IF NOT EXISTS labels (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL REFERENCES batches (key),
    id TEXT NOT NULL,
    label TEXT NOT NULL,
    labeller TEXT,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS labels_by_batch ON labels (key, row_id);
"""

_BUSY_TIMEOUT_S = 30.0
"""How long a write waits for another process's (the journal is shared by a user's labellers)."""


def journal_path() -> Path:
    """The journal file: ``VOCLOUD_JOURNAL``, else under ``XDG_STATE_HOME``, else ``~/.local/state/vocloud``."""
    given = os.environ.get(JOURNAL_ENV)
    if given:
        return Path(given).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "vocloud" / "journal.sqlite"


def session_url(server: str, session_id: str) -> str:
    """The URL a journal files a session's labels under (the server's base URL and the session id)."""
    return f"{server.rstrip('/')}/sessions/{session_id}"


class BatchState(enum.StrEnum):
    """Where a batch of labels stands (see the module docstring)."""

    OPEN = "open"
    PENDING = "pending"
    SENT = "sent"
    REFUSED = "refused"


@dataclass(frozen=True, kw_only=True)
class Batch:
    """A batch of labels as journalled.

    Attributes
    ----------
    key
        Its idempotency key.
    session_url
        The session its labels belong to.
    state
        Where it stands.
    records
        Its labels, in the order given.
    attempts
        How many times a post of it was tried.
    message
        The server's message when it was refused, or the last error while it is pending.
    answer
        The server's JSON answer once sent.
    """

    key: str
    session_url: str
    state: BatchState
    records: tuple[LabelRecord, ...]
    attempts: int = 0
    message: str | None = None
    answer: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class JournalEntry:
    """One label written to an open batch; `Journal.remove` takes it back while the batch is open."""

    row_id: int
    key: str
    record: LabelRecord


@dataclass(kw_only=True)
class FlushReport:
    """What one `Journal.flush` did.

    Attributes
    ----------
    sent
        Batches the server accepted now (or had accepted: a replayed answer counts as sent).
    refused
        Batches the server refused now; their ``message`` says why.
    left
        Batches still pending: the server could not be reached or asked to retry.
    error
        Why sending stopped early, if it did.
    """

    sent: list[Batch] = field(default_factory=list)
    refused: list[Batch] = field(default_factory=list)
    left: list[Batch] = field(default_factory=list)
    error: str | None = None

    @property
    def labels_sent(self) -> int:
        """Labels in the batches sent now."""
        return sum(len(b.records) for b in self.sent)


class LabelPoster(Protocol):
    """What `Journal.flush` needs of a client: `vocloud.client.service.VocloudClient` is one."""

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        ...

    def post_labels(
        self, session_id: str, records: Sequence[LabelRecord], *, key: str | None = None
    ) -> Mapping[str, Any]:
        """Post labels with an idempotency key; the server's JSON answer, or a `VocloudError`."""
        ...


def _alive(pid: int) -> bool:
    """Whether a process of that PID exists (a PID reused since is taken for alive: sealing waits a little)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    """The label journal in one SQLite file; safe to share between processes of one user.

    Parameters
    ----------
    path
        The journal file; by default `journal_path`. Its directory is created
        (private to the user) if needed.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or journal_path()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A label is the expert's work: FULL makes a committed label survive a power cut, not only a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._pid = os.getpid()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------------

    def record(self, session_url: str, records: Sequence[LabelRecord]) -> str:
        """Journal labels as one sealed batch, ready to send; returns its key.

        For labels that arrive together and are never taken back (a TOPCAT
        subset, an edited table); the terminal labeller uses `add` instead.
        """
        key = str(uuid.uuid4())
        with self._transaction() as db:
            self._insert_batch(db, key, session_url, BatchState.PENDING)
            self._insert_labels(db, key, records)
        return key

    def add(self, session_url: str, record: LabelRecord) -> JournalEntry:
        """Journal one label in this process's open batch of the session (opened if needed)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT key FROM batches WHERE session_url = ? AND state = ? AND pid = ? ORDER BY created LIMIT 1",
                (session_url, BatchState.OPEN.value, self._pid),
            ).fetchone()
            key = str(uuid.uuid4()) if row is None else str(row[0])
            if row is None:
                self._insert_batch(db, key, session_url, BatchState.OPEN)
            row_id = self._insert_labels(db, key, [record])
        return JournalEntry(row_id=row_id, key=key, record=record)

    def remove(self, entry: JournalEntry) -> bool:
        """Take a label back if its batch is still open; False if it was sealed (it may have been sent)."""
        with self._transaction() as db:
            state = db.execute("SELECT state FROM batches WHERE key = ?", (entry.key,)).fetchone()
            if state is None or state[0] != BatchState.OPEN.value:
                return False
            db.execute("DELETE FROM labels WHERE row_id = ? AND key = ?", (entry.row_id, entry.key))
            if db.execute("SELECT 1 FROM labels WHERE key = ? LIMIT 1", (entry.key,)).fetchone() is None:
                db.execute("DELETE FROM batches WHERE key = ?", (entry.key,))
            return True

    def seal(self, session_url: str | None = None) -> int:
        """Seal this process's open batches and those of processes that died; returns how many.

        Parameters
        ----------
        session_url
            Only that session's batches; all by default.
        """
        with self._transaction() as db:
            rows = db.execute(
                "SELECT key, pid FROM batches WHERE state = ?"
                + ("" if session_url is None else " AND session_url = ?"),
                (BatchState.OPEN.value,) + (() if session_url is None else (session_url,)),
            ).fetchall()
            keys = [key for key, pid in rows if pid is None or pid == self._pid or not _alive(int(pid))]
            db.executemany(
                "UPDATE batches SET state = ?, pid = NULL WHERE key = ?",
                [(BatchState.PENDING.value, key) for key in keys],
            )
        return len(keys)

    @staticmethod
    def _insert_batch(db: sqlite3.Connection, key: str, session_url: str, state: BatchState) -> None:
        db.execute(
            "INSERT INTO batches (key, session_url, state, pid, created) VALUES (?, ?, ?, ?, ?)",
            (key, session_url, state.value, os.getpid() if state == BatchState.OPEN else None, time.time()),
        )

    @staticmethod
    def _insert_labels(db: sqlite3.Connection, key: str, records: Sequence[LabelRecord]) -> int:
        last = 0
        for record in records:
            cursor = db.execute(
                "INSERT INTO labels (key, id, label, labeller, comment) VALUES (?, ?, ?, ?, ?)",
                (key, record.id, record.label, record.labeller, record.comment),
            )
            last = int(cursor.lastrowid or 0)
        return last

    # -- reading -------------------------------------------------------------------------------

    def batches(self, session_url: str | None = None, *, states: Sequence[BatchState] = ()) -> list[Batch]:
        """Journalled batches, oldest first, of one session or all, in the given states (all by default)."""
        query = "SELECT key, session_url, state, attempts, message, answer FROM batches WHERE 1 = 1"
        args: list[Any] = []
        if session_url is not None:
            query += " AND session_url = ?"
            args.append(session_url)
        if states:
            query += f" AND state IN ({', '.join('?' * len(states))})"
            args.extend(s.value for s in states)
        rows = self._db.execute(query + " ORDER BY created, key", args).fetchall()
        return [self._batch(row) for row in rows]

    def _batch(self, row: Sequence[Any]) -> Batch:
        key, url, state, attempts, message, answer = row
        labels = self._db.execute(
            "SELECT id, label, labeller, comment FROM labels WHERE key = ? ORDER BY row_id", (key,)
        ).fetchall()
        return Batch(
            key=key,
            session_url=url,
            state=BatchState(state),
            records=tuple(LabelRecord(*row) for row in labels),
            attempts=int(attempts),
            message=message,
            answer=None if answer is None else json.loads(answer),
        )

    def labelled(self, session_url: str) -> dict[str, str]:
        """The latest journalled label of each spectrum of a session (refused batches excluded)."""
        rows = self._db.execute(
            "SELECT l.id, l.label FROM labels AS l JOIN batches AS b ON b.key = l.key"
            " WHERE b.session_url = ? AND b.state != ? ORDER BY b.created, l.row_id",
            (session_url, BatchState.REFUSED.value),
        )
        return {str(did): str(label) for did, label in rows}

    # -- sending -------------------------------------------------------------------------------

    def flush(self, client: LabelPoster, *, session_url: str | None = None) -> FlushReport:
        """Send every pending batch of the client's server, oldest first, each with its key.

        A batch is marked sent only after a 2xx answer; a refusal that retrying
        cannot cure marks it refused with the server's message; anything else
        (no connection, a 5xx, 401, 408, 409, 425, 429) leaves it and the later
        ones pending and stops, since the next would most likely fail the same way.
        Open batches are not sent: `seal` them first.

        Parameters
        ----------
        client
            Posts the labels (`vocloud.client.service.VocloudClient`).
        session_url
            Only that session's batches; all of the client's server by default.
        """
        prefix = f"{client.url.rstrip('/')}/sessions/"
        report = FlushReport()
        pending = [
            b
            for b in self.batches(session_url, states=(BatchState.PENDING,))
            if b.session_url.startswith(prefix) and "/" not in b.session_url[len(prefix) :]
        ]
        for index, batch in enumerate(pending):
            session_id = unquote(batch.session_url[len(prefix) :])
            self._db.execute("UPDATE batches SET attempts = attempts + 1 WHERE key = ?", (batch.key,))
            try:
                answer = client.post_labels(session_id, batch.records, key=batch.key)
            except VocloudError as e:
                if e.status is None or e.status >= 500 or e.status in RETRIED_STATUSES:
                    self._note(batch.key, e.message)
                    report.error = e.message
                    report.left.extend(pending[index:])
                    break
                report.refused.append(self._finish(batch, BatchState.REFUSED, message=e.message))
                continue
            except (requests.RequestException, OSError) as e:
                self._note(batch.key, str(e))
                report.error = str(e)
                report.left.extend(pending[index:])
                break
            report.sent.append(self._finish(batch, BatchState.SENT, answer=dict(answer)))
        return report

    def _note(self, key: str, message: str) -> None:
        self._db.execute("UPDATE batches SET message = ? WHERE key = ?", (message, key))

    def _finish(
        self, batch: Batch, state: BatchState, *, message: str | None = None, answer: dict[str, Any] | None = None
    ) -> Batch:
        self._db.execute(
            "UPDATE batches SET state = ?, finished = ?, message = ?, answer = ? WHERE key = ? AND state = ?",
            (
                state.value,
                time.time(),
                message,
                None if answer is None else json.dumps(answer),
                batch.key,
                BatchState.PENDING.value,
            ),
        )
        return Batch(
            key=batch.key,
            session_url=batch.session_url,
            state=state,
            records=batch.records,
            attempts=batch.attempts + 1,
            message=message,
            answer=answer,
        )
