"""Server settings: one object, built at the edge and handed to ``create_app``.

Sources, lowest to highest precedence: built-in defaults, a TOML file
(``--config``), environment variables prefixed ``VOCLOUD_`` (e.g.
``VOCLOUD_PORT=9000``, ``VOCLOUD_KINDS=pkg.mod:KIND``), command-line options.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "default_data_dir", "is_loopback"]


class SettingsError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/vocloud`` (``~/.local/share/vocloud``): where a laptop keeps its state."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "vocloud"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Everything an operator can configure."""

    model_config = SettingsConfigDict(env_prefix="VOCLOUD_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    """Interface to listen on; anonymous use is only allowed on loopback."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port (0 picks a free one)."""
    data_dir: Path = Field(default_factory=default_data_dir)
    """Directory holding the database, job files and uploads."""
    auth: Literal["none", "basic"] = "none"
    """``basic``: HTTP Basic against the users file; ``none``: anonymous (loopback only)."""
    base_url: str | None = None
    """Public URL of the service when behind a proxy; by default taken from each request."""
    workers: int = Field(default=2, ge=1, le=256)
    """Jobs that run at once (worker processes of the local pool); more wait QUEUED."""
    kinds: Annotated[tuple[str, ...], NoDecode] = ()
    """Extra job kinds as ``module:attribute`` references (comma-separated in the environment)."""
    max_wait: float = Field(default=120.0, gt=0, le=3600)
    """Cap on a UWS blocking WAIT in seconds; ``WAIT=-1`` waits this long at most."""
    default_execution_duration: int = Field(default=3600, ge=1)
    """Execution duration (s) of a new job."""
    max_execution_duration: int = Field(default=86400, ge=1)
    """Longest execution duration (s) a client may ask for."""
    default_lifetime: int = Field(default=7 * 86400, ge=60)
    """Seconds from a job's creation to its destruction, unless the client asks otherwise."""
    max_lifetime: int = Field(default=30 * 86400, ge=60)
    """Longest a client may ask a job to be kept (s from now)."""
    ingest_roots: Annotated[tuple[Path, ...], NoDecode] = ()
    """Directories an ``ingest`` job may read by path (comma-separated in the environment); none by default."""
    demo_spectra: int = Field(default=3000, ge=0, le=1_000_000)
    """Demo spectra generated and archived when the server starts on an empty archive; 0 for none."""
    max_upload: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest accepted request body or upload in bytes."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging threshold."""

    @field_validator("kinds", "ingest_roots", mode="before")
    @classmethod
    def _split_kinds(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @property
    def database(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "vocloud.sqlite"

    @property
    def public_url(self) -> str:
        """The base URL written into job results (links outlive the request that made them).

        ``base_url`` when set; otherwise the address the server listens on, which
        is right for the loopback default and wrong behind a proxy, where the
        operator has to set ``base_url`` anyway.
        """
        if self.base_url:
            return self.base_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def archive_dir(self) -> Path:
        """The spectra archive: its metadata database and stored files."""
        return self.data_dir / "archive"

    @property
    def demo_dir(self) -> Path:
        """Where the demo archive's files and true labels are written."""
        return self.data_dir / "demo"

    @property
    def incoming_dir(self) -> Path:
        """Where uploads are streamed before a job takes them over (emptied at start-up)."""
        return self.data_dir / "uploads-incoming"

    @property
    def users_file(self) -> Path:
        """The file of users and salted password hashes (``vocloud user add``)."""
        return self.data_dir / "users.json"

    @classmethod
    def load(cls, *, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Combine defaults, a TOML file, the environment and explicit overrides.

        Raises
        ------
        SettingsError
            Raised if the file cannot be read or a value is invalid.
        """
        file_values: dict[str, Any] = {}
        if config_file is not None:
            try:
                file_values = tomllib.loads(config_file.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as e:
                msg = f"Cannot read the configuration file {config_file}: {e}"
                raise SettingsError(msg) from e
            file_values = file_values.get("vocloud", file_values)
        try:
            from_env = cls()
            env_values = {name: getattr(from_env, name) for name in from_env.model_fields_set}
            given = {k: v for k, v in overrides.items() if v is not None}
            return cls(**{**file_values, **env_values, **given})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            msg = f"Invalid settings: {problems}"
            raise SettingsError(msg) from e

    def check_exposure(self) -> None:
        """Refuse anonymous access on a non-loopback interface.

        Raises
        ------
        SettingsError
            Raised if ``auth`` is ``none`` and ``host`` is reachable from other machines.
        """
        if self.auth == "none" and not is_loopback(self.host):
            msg = (
                f"Refusing anonymous access on {self.host}: bind to 127.0.0.1 or use --auth basic"
                " (add users with 'vocloud user add NAME')"
            )
            raise SettingsError(msg)
