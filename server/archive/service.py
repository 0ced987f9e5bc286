"""The archive of one server: its metadata store and the directory of stored files."""

from __future__ import annotations

from pathlib import Path

from .store import ArchiveStore, SpectrumRecord

__all__ = ["Archive"]


class Archive:
    """Spectra metadata (SQLite) plus the stored original files.

    Parameters
    ----------
    root
        Directory of the archive: ``archive.sqlite`` and ``files/``. Stored
        files get server-made names (``files/<aa>/<hash>.<ext>``), never a
        name from a request.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files_dir = root / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.store = ArchiveStore(root / "archive.sqlite")

    def file_path(self, record: SpectrumRecord) -> Path:
        """Where the original file of an archived spectrum lies."""
        return self.files_dir / record.file

    def close(self) -> None:
        """Close the metadata store."""
        self.store.close()
