"""Persistence of active-learning sessions in SQLite (WAL); no policy lives here.

A separate database file (``sessions.sqlite`` in the data directory) from the
job store's: sessions refer to jobs by id only, and neither store's schema
has to know the other's.

Labels are kept twice: ``labels`` is the append-only history (every post,
who and when), ``current_labels`` the latest label of each spectrum, updated
in the same transaction. Everything a session document shows (label counts,
how much of an oracle batch is labelled, the precision sample's labels) is
then an indexed query over distinct labelled spectra, never a scan of the
history. An iteration's oracle batch and precision sample are kept as rows
(``members``) for the same reason.

Two connections: one used on the event loop's thread for small reads and
writes (tens of microseconds each), and one for the bulk writes (a post of up
to 100,000 labels, deleting a session) that the service runs in a worker
thread, so that the event loop never waits for them; WAL lets the loop's
reads go on meanwhile.

A label post made with an idempotency key leaves a row in ``idempotency_keys``
(session, owner, key, a fingerprint of its labels and its answer) written in
the transaction that stores its labels: either both are there or neither, so a
retry after a crash or a lost answer is recognised exactly when its labels were
stored. The rows last as long as their session.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..ml.iteration import IterationOutcome, SessionSettings
from ..sqlite import open_database, transaction
from .labels_input import IdempotencyKeyReusedError
from .models import (
    IterationRow,
    IterationStatus,
    LabelEntry,
    MemberCounts,
    NewLabel,
    SessionRecord,
    StoppingCriteria,
)

__all__ = ["IdempotentAnswer", "SessionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    owner TEXT,
    title TEXT,
    created REAL NOT NULL,
    settings TEXT NOT NULL,
    label_budget INTEGER,
    uncertainty_threshold REAL,
    precision_target REAL,
    auto_advance INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_owner ON sessions (owner, created);
CREATE TABLE IF NOT EXISTS iterations (
    session_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    job_id TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    finished REAL,
    outcome TEXT,
    error TEXT,
    PRIMARY KEY (session_id, number)
);
CREATE INDEX IF NOT EXISTS iterations_by_status ON iterations (status);
CREATE TABLE IF NOT EXISTS members (
    session_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    role TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (session_id, number, role, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS labels (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    label TEXT NOT NULL,
    labeller TEXT,
    comment TEXT,
    owner TEXT,
    posted REAL NOT NULL,
    iteration INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS current_labels (
    session_id TEXT NOT NULL,
    id TEXT NOT NULL,
    label TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (session_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS current_labels_by_label ON current_labels (session_id, label);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    session_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    labelled INTEGER NOT NULL,
    next_job_id TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (session_id, owner, key)
) WITHOUT ROWID;
"""

ORACLE = "oracle"
"""``members.role`` of the oracle batch."""
PRECISION_SAMPLE = "precision_sample"
"""``members.role`` of the precision sample."""

_ANONYMOUS = ""
"""``idempotency_keys.owner`` of anonymous posts: a NULL would make every key distinct in the primary key."""

_SESSION_COLUMNS = (
    "session_id, owner, title, created, settings, label_budget, uncertainty_threshold, precision_target, auto_advance"
)
_ITERATION_COLUMNS = "session_id, number, job_id, created, status, finished, outcome, error"


@dataclass(frozen=True, kw_only=True)
class IdempotentAnswer:
    """What a label post made with an idempotency key answered: stored with its labels, replayed to retries.

    Attributes
    ----------
    accepted
        Labels the post stored.
    labelled
        Distinct spectra labelled just after it.
    next_job_id
        The iteration job it started, once known (None if it started none).
    replayed
        True when this is the answer of an earlier post, nothing having been stored now.
    """

    accepted: int
    labelled: int
    next_job_id: str | None = None
    replayed: bool = False


def _reused(key: str) -> IdempotencyKeyReusedError:
    msg = (
        f"Idempotency-Key {key!r} was already used on this session for different labels; nothing was stored."
        " A retry must send the same labels, a new post needs a new key"
    )
    return IdempotencyKeyReusedError(msg)


def _utc(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _settings(text: str) -> SessionSettings:
    raw: dict[str, Any] = json.loads(text)
    return SessionSettings(**{**raw, "classes": tuple(raw["classes"])})


def _session(row: Sequence[Any]) -> SessionRecord:
    return SessionRecord(
        session_id=row[0],
        owner=row[1],
        title=row[2],
        created=_utc(row[3]),
        settings=_settings(row[4]),
        criteria=StoppingCriteria(label_budget=row[5], uncertainty_threshold=row[6], precision_target=row[7]),
        auto_advance=bool(row[8]),
    )


def _iteration(row: Sequence[Any]) -> IterationRow:
    return IterationRow(
        session_id=row[0],
        number=int(row[1]),
        job_id=row[2],
        created=_utc(row[3]),
        status=IterationStatus(row[4]),
        finished=None if row[5] is None else _utc(row[5]),
        outcome=None if row[6] is None else IterationOutcome.from_json(row[6]),
        error=row[7],
    )


class SessionStore:
    """SQLite-backed storage of sessions, their iterations and their labels.

    Parameters
    ----------
    path
        The database file; created with its schema if absent.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA)
        self._bulk = open_database(path, _SCHEMA)
        self._bulk_lock = threading.Lock()
        """Serialises the worker threads that share the bulk connection."""

    def close(self) -> None:
        """Close both connections."""
        self._db.close()
        with self._bulk_lock:
            self._bulk.close()

    # -- sessions (bulk writes: call from a worker thread) ------------------------------

    def add_session(self, record: SessionRecord, labels: Sequence[NewLabel]) -> None:
        """Insert a new session with its initial labels, all or nothing (posted by its owner at creation)."""
        criteria = record.criteria
        with self._bulk_lock, transaction(self._bulk) as db:
            db.execute(
                f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.session_id, record.owner, record.title, record.created.timestamp(),
                    json.dumps(asdict(record.settings), sort_keys=True), criteria.label_budget,
                    criteria.uncertainty_threshold, criteria.precision_target, int(record.auto_advance),
                ),
            )  # fmt: skip
            self._insert_labels(db, record.session_id, labels, owner=record.owner, posted=record.created)

    def add_labels(
        self,
        session_id: str,
        labels: Sequence[NewLabel],
        *,
        owner: str | None,
        posted: datetime,
        key: str | None = None,
        fingerprint: str = "",
    ) -> IdempotentAnswer | None:
        """Append labels to the history and make them the latest, all or nothing.

        With an idempotency ``key``, the key and the answer are stored in the same
        transaction; if the key is already there, nothing is stored and its
        earlier answer is returned (marked ``replayed``).

        Returns
        -------
        IdempotentAnswer or None
            Labels stored and distinct spectra now labelled; None if the session
            no longer exists (nothing is stored then).

        Raises
        ------
        IdempotencyKeyReusedError
            Raised if ``key`` was used on the session by ``owner`` with another ``fingerprint``.
        """
        with self._bulk_lock, transaction(self._bulk) as db:
            if db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)).fetchone() is None:
                return None
            if key is not None:
                earlier = self._answer(db, session_id, owner, key, fingerprint)
                if earlier is not None:
                    return earlier
            self._insert_labels(db, session_id, labels, owner=owner, posted=posted)
            total = db.execute("SELECT COUNT(*) FROM current_labels WHERE session_id = ?", (session_id,)).fetchone()
            answer = IdempotentAnswer(accepted=len(labels), labelled=int(total[0]))
            if key is not None:
                db.execute(
                    "INSERT INTO idempotency_keys (session_id, owner, key, fingerprint, accepted, labelled, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        session_id, _ANONYMOUS if owner is None else owner, key, fingerprint, answer.accepted,
                        answer.labelled, posted.timestamp(),
                    ),
                )  # fmt: skip
            return answer

    def idempotent_answer(
        self, session_id: str, owner: str | None, key: str, fingerprint: str
    ) -> IdempotentAnswer | None:
        """The stored answer of the owner's post with that key (``replayed``), or None if the key is new.

        Raises
        ------
        IdempotencyKeyReusedError
            Raised if the key was stored with another ``fingerprint``.
        """
        return self._answer(self._db, session_id, owner, key, fingerprint)

    def set_next_job(self, session_id: str, owner: str | None, key: str, job_id: str) -> None:
        """Add the iteration job a keyed post started to its stored answer (known only after the labels are)."""
        with transaction(self._db) as db:
            db.execute(
                "UPDATE idempotency_keys SET next_job_id = ? WHERE session_id = ? AND owner = ? AND key = ?",
                (job_id, session_id, _ANONYMOUS if owner is None else owner, key),
            )

    @staticmethod
    def _answer(db: Any, session_id: str, owner: str | None, key: str, fingerprint: str) -> IdempotentAnswer | None:
        row = db.execute(
            "SELECT fingerprint, accepted, labelled, next_job_id FROM idempotency_keys"
            " WHERE session_id = ? AND owner = ? AND key = ?",
            (session_id, _ANONYMOUS if owner is None else owner, key),
        ).fetchone()
        if row is None:
            return None
        if row[0] != fingerprint:
            raise _reused(key)
        return IdempotentAnswer(accepted=int(row[1]), labelled=int(row[2]), next_job_id=row[3], replayed=True)

    @staticmethod
    def _insert_labels(
        db: Any, session_id: str, labels: Sequence[NewLabel], *, owner: str | None, posted: datetime
    ) -> None:
        if not labels:
            return
        iteration = db.execute(
            "SELECT COALESCE(MAX(number), 0) FROM iterations WHERE session_id = ?", (session_id,)
        ).fetchone()[0]
        first = (
            1 + db.execute("SELECT COALESCE(MAX(seq), 0) FROM labels WHERE session_id = ?", (session_id,)).fetchone()[0]
        )
        when = posted.timestamp()
        db.executemany(
            "INSERT INTO labels (session_id, seq, id, label, labeller, comment, owner, posted, iteration)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (session_id, first + i, item.id, item.label, item.labeller, item.comment, owner, when, iteration)
                for i, item in enumerate(labels)
            ),
        )
        db.executemany(
            "INSERT INTO current_labels (session_id, id, label, seq) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (session_id, id) DO UPDATE SET label = excluded.label, seq = excluded.seq",
            ((session_id, item.id, item.label, first + i) for i, item in enumerate(labels)),
        )

    def delete_session(self, session_id: str) -> None:
        """Forget a session: its record, iterations and labels (its jobs are the job store's)."""
        with self._bulk_lock, transaction(self._bulk) as db:
            for table in ("labels", "current_labels", "members", "iterations", "idempotency_keys", "sessions"):
                db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

    # -- sessions (event loop) ---------------------------------------------------------------

    def get_session(self, session_id: str) -> SessionRecord | None:
        """The session of that id, if it exists."""
        row = self._db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = ?", (session_id,))
        found = row.fetchone()
        return None if found is None else _session(found)

    def list_sessions(self, owner: str | None) -> list[SessionRecord]:
        """The owner's sessions, oldest first."""
        rows = self._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE owner IS ? ORDER BY created, session_id", (owner,)
        )
        return [_session(row) for row in rows]

    def session_ids(self) -> list[str]:
        """Every session's id (for reconciling at start-up)."""
        return [row[0] for row in self._db.execute("SELECT session_id FROM sessions ORDER BY created")]

    # -- iterations -----------------------------------------------------------------------

    def add_iteration(self, session_id: str, number: int, job_id: str, created: datetime) -> bool:
        """Record a started iteration; False (nothing recorded) if the session no longer exists."""
        with transaction(self._db) as db:
            if db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)).fetchone() is None:
                return False
            db.execute(
                f"INSERT INTO iterations ({_ITERATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL)",
                (session_id, number, job_id, created.timestamp(), IterationStatus.PENDING.value),
            )
            return True

    def next_number(self, session_id: str) -> int:
        """The number the session's next iteration gets."""
        row = self._db.execute("SELECT COALESCE(MAX(number), 0) FROM iterations WHERE session_id = ?", (session_id,))
        return int(row.fetchone()[0]) + 1

    def finish_iteration(
        self,
        job_id: str,
        *,
        finished: datetime,
        outcome: IterationOutcome | None = None,
        error: str | None = None,
    ) -> IterationRow | None:
        """Record the end of a pending iteration: completed with ``outcome``, else failed with ``error``.

        Returns
        -------
        IterationRow or None
            The updated iteration; None if no pending iteration runs as that job
            (another job, or one already recorded).
        """
        status = IterationStatus.COMPLETED if outcome is not None else IterationStatus.FAILED
        with transaction(self._db) as db:
            row = db.execute(
                f"SELECT {_ITERATION_COLUMNS} FROM iterations WHERE job_id = ? AND status = ?",
                (job_id, IterationStatus.PENDING.value),
            ).fetchone()
            if row is None:
                return None
            session_id, number = row[0], int(row[1])
            db.execute(
                "UPDATE iterations SET status = ?, finished = ?, outcome = ?, error = ? WHERE job_id = ?",
                (
                    status.value, finished.timestamp(), None if outcome is None else outcome.to_json(), error,
                    job_id,
                ),
            )  # fmt: skip
            if outcome is not None:
                members = [(ORACLE, did) for did in outcome.oracle]
                members += [(PRECISION_SAMPLE, did) for did in outcome.precision_sample]
                db.executemany(
                    "INSERT OR IGNORE INTO members (session_id, number, role, id) VALUES (?, ?, ?, ?)",
                    ((session_id, number, role, did) for role, did in members),
                )
            updated = db.execute(f"SELECT {_ITERATION_COLUMNS} FROM iterations WHERE job_id = ?", (job_id,))
            return _iteration(updated.fetchone())

    def iterations(self, session_id: str) -> list[IterationRow]:
        """The session's iterations, by number."""
        rows = self._db.execute(
            f"SELECT {_ITERATION_COLUMNS} FROM iterations WHERE session_id = ? ORDER BY number", (session_id,)
        )
        return [_iteration(row) for row in rows]

    def pending_iterations(self) -> list[IterationRow]:
        """Iterations of every session whose end has not been recorded."""
        rows = self._db.execute(
            f"SELECT {_ITERATION_COLUMNS} FROM iterations WHERE status = ? ORDER BY created",
            (IterationStatus.PENDING.value,),
        )
        return [_iteration(row) for row in rows]

    def member_counts(self, session_id: str, positive_class: str) -> dict[int, MemberCounts]:
        """By iteration number: how much of its oracle batch and precision sample carries a (latest) label."""
        rows = self._db.execute(
            "SELECT m.number, m.role, COUNT(c.id), COALESCE(SUM(c.label = ?), 0)"
            " FROM members AS m LEFT JOIN current_labels AS c ON c.session_id = m.session_id AND c.id = m.id"
            " WHERE m.session_id = ? GROUP BY m.number, m.role",
            (positive_class, session_id),
        )
        oracle: dict[int, int] = {}
        sample: dict[int, tuple[int, int]] = {}
        for number, role, labelled, positive in rows:
            if role == ORACLE:
                oracle[int(number)] = int(labelled)
            else:
                sample[int(number)] = (int(labelled), int(positive))
        return {
            number: MemberCounts(
                oracle_labelled=oracle.get(number, 0),
                sample_labelled=sample.get(number, (0, 0))[0],
                sample_positive=sample.get(number, (0, 0))[1],
            )
            for number in sorted(oracle.keys() | sample.keys())
        }

    # -- labels --------------------------------------------------------------------------------

    def label_counts(self, session_id: str) -> dict[str, int]:
        """Distinct labelled spectra by their latest label."""
        rows = self._db.execute(
            "SELECT label, COUNT(*) FROM current_labels WHERE session_id = ? GROUP BY label", (session_id,)
        )
        return {str(label): int(count) for label, count in rows}

    def current_labels(self, session_id: str) -> dict[str, str]:
        """The latest label of every labelled spectrum, by publisher DID (a bulk read: call from a worker thread)."""
        with self._bulk_lock:
            rows = self._bulk.execute(
                "SELECT id, label FROM current_labels WHERE session_id = ? ORDER BY id", (session_id,)
            ).fetchall()
        return {str(did): str(label) for did, label in rows}

    def label_history(self, session_id: str) -> list[LabelEntry]:
        """Every label ever posted to the session, in posting order (a bulk read: call from a worker thread)."""
        with self._bulk_lock:
            rows = self._bulk.execute(
                "SELECT seq, id, label, labeller, comment, owner, posted, iteration FROM labels"
                " WHERE session_id = ? ORDER BY seq",
                (session_id,),
            ).fetchall()
        return [
            LabelEntry(
                seq=int(seq), id=did, label=label, labeller=labeller, comment=comment, owner=owner,
                posted=_utc(posted), iteration=int(iteration),
            )
            for seq, did, label, labeller, comment, owner, posted, iteration in rows
        ]  # fmt: skip
