"""SQLite as vocloud's stores use it: one way to open a database and one way to change it.

WAL lets readers (other processes too: ingest workers write the archive while
the server reads it) go on while one writer commits; ``synchronous=NORMAL``
keeps every committed transaction across a crash of the process (``kill -9``),
only an operating-system crash may lose the last ones. Transactions are
``BEGIN IMMEDIATE``, so a writer waits for the lock up front (up to the busy
timeout) instead of failing halfway.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["BUSY_TIMEOUT_S", "open_database", "transaction"]

BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's transaction to finish."""


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating if needed) a database in WAL mode and apply its idempotent ``schema``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed at the end of the block, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
