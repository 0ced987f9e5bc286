"""The spectra archive: metadata store with a positional index, file storage, ingest."""
