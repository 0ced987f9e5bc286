"""A real ``vocloud serve`` process on a free loopback port, for tests, the conformance runner and benchmarks.

In-process servers (``aiohttp_client``) cannot show what only the real process
does: its start-up, its worker pool's processes, what survives ``kill -9``, how
it behaves under load measured from outside. Each server leads its own session
(process group), so that every process it starts, the forkserver and the pool's
workers included, can be found and is gone when it is stopped.

Only the standard library, so that the scripts using it need nothing the
server does not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "READY_PATH",
    "REPO_ROOT",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "TEST_KINDS",
    "LiveServer",
    "ServerStartError",
    "free_port",
    "group_members",
    "log_tail",
    "running_server",
    "server_environment",
    "vocloud_command",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout: the server runs there, with it on PYTHONPATH so that ``tests.support.kinds`` imports."""

TEST_KINDS = "tests.support.kinds:ALL"
"""The engine-test job kinds (sleep, fail, upload) the server offers unless told otherwise."""

READY_PATH = "/jobs/availability"
"""Polled until it answers 200: VOSI availability is cheap and needs the whole app up."""

START_TIMEOUT_S = 60.0
"""Default time for the server to answer: imports and the worker pool's start."""

STOP_TIMEOUT_S = 30.0
"""Default time for a graceful stop (SIGTERM) before the server is killed."""

_KILL_TIMEOUT_S = 10.0
"""Time for killed processes to be gone: SIGKILL cannot be ignored, so only a broken machine needs more."""

_POLL_S = 0.05


class ServerStartError(RuntimeError):
    """The server exited, or did not answer in time; the message ends with the last lines of its log."""


def free_port() -> int:
    """A TCP port free on loopback now (another process could take it before the server does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def vocloud_command() -> list[str]:
    """The ``vocloud`` console script beside this interpreter, else the same through ``-m``.

    The console script is what an operator runs; the module is the fallback
    for an environment where it was not installed.
    """
    script = Path(sys.executable).with_name("vocloud")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "vocloud.client.cli"]


def server_environment(*, kinds: str = TEST_KINDS, demo_spectra: int = 40) -> dict[str, str]:
    """This process's environment without its ``VOCLOUD_*`` settings, serving ``kinds``.

    An operator's own settings (auth, workers, limits, kinds) would change what
    a test, a validator or a benchmark sees.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("VOCLOUD_")}
    env["VOCLOUD_KINDS"] = kinds
    # A small demo archive by default: enough to query, quick to generate at every start.
    env["VOCLOUD_DEMO_SPECTRA"] = str(demo_spectra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log, or ``(no log)`` when it cannot be read."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def group_members(pgid: int) -> set[int]:
    """Live (not zombie) processes of a process group, read from ``/proc`` (Linux)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may itself hold spaces or parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.add(int(entry.name))
    return members


# A proxy from the environment must not stand between a probe and a loopback server.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LiveServer:
    """One ``vocloud serve`` process on a loopback port, leading its own process group.

    Build it with :meth:`start`; the constructor only records what was started.

    Parameters
    ----------
    process
        The server process, started with ``start_new_session=True``.
    port
        The loopback port it listens on.
    data_dir
        Its data directory.
    log_path
        The file receiving its output.
    """

    def __init__(self, process: subprocess.Popen[bytes], *, port: int, data_dir: Path, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.log_path = log_path

    @classmethod
    def start(
        cls, *, data_dir: Path, log_path: Path, workers: int = 1, kinds: str = TEST_KINDS, demo_spectra: int = 40
    ) -> LiveServer:
        """Start ``vocloud serve`` on a free loopback port; it is not answering yet (see :meth:`wait_ready`).

        Parameters
        ----------
        data_dir
            The server's data directory; a restart on the same one finds its jobs.
        log_path
            File receiving the server's output. Appended to, so that servers
            restarted on one log keep the earlier ones' lines.
        workers
            Size of the server's process pool (one makes a QUEUED job possible).
        kinds
            ``VOCLOUD_KINDS`` of the server.
        demo_spectra
            Size of the demo archive generated at its first start.
        """
        port = free_port()
        command = [
            *vocloud_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data_dir), "--workers", str(workers),
        ]  # fmt: skip
        env = server_environment(kinds=kinds, demo_spectra=demo_spectra)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return cls(process, port=port, data_dir=data_dir, log_path=log_path)

    @property
    def pid(self) -> int:
        """The server's PID, which is also its process group's ID."""
        return self.process.pid

    def url(self, path: str) -> str:
        """Absolute URL of a server path."""
        return f"{self.base_url}{path}"

    def output(self) -> str:
        """Everything logged to the server's log file so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, *, timeout: float = START_TIMEOUT_S, path: str = READY_PATH) -> None:
        """Poll ``path`` until it answers 200.

        Raises
        ------
        ServerStartError
            Raised if the server exits first, or does not answer within ``timeout`` seconds.
        """
        url = self.url(path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._start_error(f"The server exited with status {self.process.returncode}")
            try:
                with _DIRECT.open(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # Not listening yet, or an error status while it starts.
            time.sleep(_POLL_S)
        raise self._start_error(f"The server did not answer {url} within {timeout:g} s")

    def _start_error(self, reason: str) -> ServerStartError:
        return ServerStartError(f"{reason}; the end of its log {self.log_path}:\n{log_tail(self.log_path)}")

    def group_members(self) -> set[int]:
        """Live processes of the server's group (the server, its forkserver and workers)."""
        return group_members(self.pid)

    def kill_server_only(self) -> None:
        """SIGKILL the server process alone, as a crash or the OOM killer would; its children are left."""
        self.process.kill()
        self.process.wait(timeout=_KILL_TIMEOUT_S)

    def terminate(self, *, timeout: float = STOP_TIMEOUT_S) -> int:
        """Stop the server as an operator would (SIGTERM) and return its exit status.

        Raises
        ------
        subprocess.TimeoutExpired
            Raised if it is still running after ``timeout`` seconds.
        """
        self.process.terminate()
        return self.process.wait(timeout=timeout)

    def stop(self, *, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``), then kill what is left of its group.

        Graceful first, so that the server shuts its worker pool down as it
        would for an operator; the group is killed afterwards because nothing a
        server started may outlive it. Returns once every process of the group
        is gone, or after a few more seconds if one cannot be killed (the
        caller may check :meth:`group_members`).
        """
        if self.process.poll() is None:
            try:
                self.terminate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=_KILL_TIMEOUT_S)
        if self.group_members():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_TIMEOUT_S
        while self.group_members() and time.monotonic() < deadline:
            time.sleep(_POLL_S)


@contextlib.contextmanager
def running_server(
    *,
    data_dir: Path,
    log_path: Path,
    workers: int = 1,
    kinds: str = TEST_KINDS,
    ready_path: str = READY_PATH,
    timeout: float = START_TIMEOUT_S,
    demo_spectra: int = 40,
) -> Iterator[LiveServer]:
    """Start a server, wait until it answers, yield it, and stop it however the block ends.

    Parameters are those of :meth:`LiveServer.start` and :meth:`LiveServer.wait_ready`.

    Raises
    ------
    ServerStartError
        Raised if the server exits or does not answer ``ready_path`` within ``timeout`` seconds.
    """
    server = LiveServer.start(
        data_dir=data_dir, log_path=log_path, workers=workers, kinds=kinds, demo_spectra=demo_spectra
    )
    try:
        server.wait_ready(timeout=timeout, path=ready_path)
        yield server
    finally:
        server.stop()
