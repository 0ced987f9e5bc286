"""Start and stop the real SAMP peers the conformance tests talk to: Xvfb, TOPCAT, Aladin, jsamp's test clients.

Installed by ``conformance/install-samp-peers`` (Debian packages). Each program
is started in a session (process group) of its own, led by the process we
started, and stopped through that PID: the ``topcat`` script keeps a shell
between us and its JVM, which a signal to the shell alone would leave running;
Aladin ignores SIGTERM and is killed outright. `stop` returns once the whole
group is gone.

Only the standard library (and ``tests.support.live_server`` for the process
groups), so that it imports wherever the tests do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.live_server import group_members

__all__ = [
    "ALADIN_JAR",
    "JSAMP_JAR",
    "RunningPeer",
    "SnoopedMessage",
    "missing_programs",
    "parse_snooper",
    "run_message_sender",
    "start_aladin",
    "start_snooper",
    "start_topcat",
    "start_xvfb",
    "wait_for",
]

JSAMP_JAR = Path("/usr/share/java/jsamp.jar")
ALADIN_JAR = Path("/usr/share/java/aladin.jar")

STOP_TIMEOUT_S = 10.0
"""Time for a peer to leave after SIGTERM before its group is killed."""

_POLL_S = 0.05


def missing_programs() -> list[str]:
    """What ``conformance/install-samp-peers`` would install that is not here (empty when all are)."""
    missing = [name for name in ("Xvfb", "topcat", "java") if shutil.which(name) is None]
    missing += [str(jar) for jar in (JSAMP_JAR, ALADIN_JAR) if not jar.is_file()]
    return missing


@dataclass
class RunningPeer:
    """A program we started, leading its own process group.

    Attributes
    ----------
    name
        What it is, for messages.
    process
        The process we started (the group leader).
    log
        The file receiving its output.
    kill_at_once
        Whether it ignores SIGTERM (Aladin), so stopping it is SIGKILL.
    """

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    kill_at_once: bool = False

    @property
    def pid(self) -> int:
        """The PID we started, which is also the process group's ID."""
        return self.process.pid

    def output(self) -> str:
        """Everything it printed so far."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop it (SIGTERM, or SIGKILL for a program that ignores it), then what is left of its group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL if self.kill_at_once else signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)
        if group_members(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while group_members(self.pid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)


def _start(
    name: str, command: Sequence[str], *, log: Path, env: Mapping[str, str], kill_at_once: bool = False
) -> RunningPeer:
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(command), env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return RunningPeer(name=name, process=process, log=log, kill_at_once=kill_at_once)


@contextlib.contextmanager
def start_xvfb(log: Path, *, timeout: float = 30.0) -> Iterator[str]:
    """Run an X server without a screen for the block; yields its ``DISPLAY`` (``:N``).

    Xvfb picks a free display number itself and writes it to ``-displayfd``
    once it accepts clients, so two runs on one machine never collide and
    nothing polls.

    Raises
    ------
    RuntimeError
        Raised if Xvfb exits or says nothing within ``timeout`` seconds.
    """
    read, write = os.pipe()
    try:
        with log.open("ab") as out:
            process = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, pass_fds=(write,),
                start_new_session=True,
            )  # fmt: skip
    finally:
        os.close(write)
    peer = RunningPeer(name="Xvfb", process=process, log=log)
    try:
        with os.fdopen(read, "rb") as answer:
            number = _read_line(answer, timeout=timeout)
        if not number.strip().isdigit():
            msg = f"Xvfb did not start: {peer.output()[-2000:]}"
            raise RuntimeError(msg)
        yield f":{number.strip()}"
    finally:
        peer.stop()


def _read_line(stream: Any, *, timeout: float) -> str:
    import select  # noqa: PLC0415 - only Xvfb's start needs it

    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(stream.fileno(), 64)
        if not chunk:
            break
        data += chunk
    return data.decode("ascii", "replace")


def start_topcat(*, env: Mapping[str, str], log: Path) -> RunningPeer:
    """TOPCAT registering with the hub ``SAMP_HUB`` in ``env`` names (``-nohub``: never one of its own)."""
    return _start("TOPCAT", ["topcat", "-samp", "-nohub"], log=log, env=env)


def start_aladin(*, home: Path, env: Mapping[str, str], log: Path) -> RunningPeer:
    """Aladin, offline, registering with the hub whose lockfile is ``home/.samp`` (it ignores ``SAMP_HUB``)."""
    command = [
        "java", f"-Duser.home={home}", "-jar", str(ALADIN_JAR), "-local", "-noreleasetest", "-nolog", "-noplugin",
    ]  # fmt: skip
    return _start("Aladin", command, log=log, env=env, kill_at_once=True)


def start_snooper(*, env: Mapping[str, str], log: Path, name: str = "snoop", mtype: str = "spectrum.*") -> RunningPeer:
    """jsamp's Snooper, standing in for SPLAT: it subscribes to ``mtype`` and prints every message it receives."""
    command = [
        "java", "-cp", str(JSAMP_JAR), "org.astrogrid.samp.test.Snooper", "-clientname", name, "-mtype", mtype,
    ]  # fmt: skip
    return _start("Snooper", command, log=log, env=env)


def run_message_sender(
    mtype: str,
    params: Mapping[str, str],
    *,
    target: str,
    env: Mapping[str, str],
    log: Path,
    timeout: float = 60.0,
) -> tuple[int, str]:
    """Send one message as jsamp's MessageSender (a human in TOPCAT, for our purposes) and wait for the reply.

    Parameters
    ----------
    mtype, params
        The message; values are SAMP values written as MessageSender reads
        them (a JSON-like list for a list: ``["0","2"]``).
    target
        The ``samp.name`` of the receiver.

    Returns
    -------
    tuple
        Its exit status and output (the reply, in sync mode).
    """
    command = ["java", "-cp", str(JSAMP_JAR), "org.astrogrid.samp.test.MessageSender", "-mtype", mtype]
    for name, value in params.items():
        command += ["-param", name, value]
    command += ["-mode", "sync", "-targetname", target]
    peer = _start("MessageSender", command, log=log, env=env)
    try:
        status = peer.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        status = -1
    finally:
        peer.stop()
    return status, peer.output()


@dataclass(frozen=True)
class SnoopedMessage:
    """One message the Snooper printed."""

    sender: str
    kind: str
    """``call`` or ``notify``."""
    message: dict[str, Any]
    """The whole message: ``samp.mtype``, ``samp.params``, and what the hub added."""


def parse_snooper(output: str) -> list[SnoopedMessage]:
    """The messages in a Snooper's output: a ``SENDER --- KIND (...)`` line, then the message as JSON."""
    messages = []
    decoder = json.JSONDecoder()
    position = 0
    while (marker := output.find(" --- ", position)) >= 0:
        line_start = output.rfind("\n", 0, marker) + 1
        sender = output[line_start:marker].strip()
        kind = output[marker + 5 :].split(maxsplit=1)[0] if output[marker + 5 :].strip() else ""
        brace = output.find("{", marker)
        if brace < 0:
            break
        try:
            message, end = decoder.raw_decode(output, brace)
        except json.JSONDecodeError:
            position = brace + 1
            continue
        messages.append(SnoopedMessage(sender=sender, kind=kind, message=message))
        position = end
    return messages


def wait_for(predicate: Any, *, timeout: float, what: str) -> float:
    """Poll ``predicate()`` until it is true; returns the seconds it took.

    Raises
    ------
    TimeoutError
        Raised if it is still false after ``timeout`` seconds; the message names ``what``.
    """
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            msg = f"{what} did not happen within {timeout:g} s"
            raise TimeoutError(msg)
        time.sleep(_POLL_S)
    return time.monotonic() - started
