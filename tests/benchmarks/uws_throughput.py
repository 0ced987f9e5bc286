"""End-to-end throughput and latency of a UWS 1.1 job engine, over real HTTP on loopback.

Why this exists: with aiohttp able to take thousands of small requests a second,
the job store, the queue, the executor and the blocking ``WAIT`` set how many
jobs a second vocloud serves, and how quickly a client learns that its job is
done. The reference, GAVO DaCHS 2.7, manages about 0.37 TAP async jobs/s on
these machines (a process per job, ``WAIT`` checked once a second); vocloud
aims at 100 times that (37 jobs/s) and at waking a blocked ``WAIT`` within
50 ms of the phase change. This script measures those figures the way a client
sees them, and prints them side by side in one table, as ratios; it asserts no
timings, because the machines are shared and noisy.

What it measures:

1. jobs/s and cycle latency for the full life of a trivial job: create (POST,
   303) → run → block with ``WAIT`` until a terminal phase → fetch the first
   result → DELETE; from 1 and 8 concurrent clients.
2. ``WAIT`` wake-up latency: the time the response reached a client blocked in
   ``WAIT=30`` minus the job's ``uws:endTime`` in that response (same machine,
   same clock; ``endTime`` has millisecond resolution).
3. Whether 100 clients blocked in a long ``WAIT`` on PENDING jobs slow other
   requests: median latency of small GETs with no waiters, with the waiters in
   place, and after they left.

By default it starts ``vocloud serve`` itself (with the test job kinds, in a
temporary data directory) and stops it at the end. ``--base-url`` measures a
server that is already running instead; with ``--kind-path``,
``--run-via-phase`` and ``--job-params`` the same script measures another
implementation's UWS endpoint, e.g. GAVO DaCHS's TAP async::

    .venv/bin/python tests/benchmarks/uws_throughput.py \\
        --base-url http://127.0.0.1:8090 --kind-path /tap/async --run-via-phase \\
        --availability-path /tap/availability \\
        --job-params 'REQUEST=doQuery&LANG=ADQL&QUERY=SELECT TOP 1 * FROM tap_schema.tables' \\
        --wake-params 'REQUEST=doQuery&LANG=ADQL&QUERY=SELECT TOP 1 * FROM tap_schema.tables'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import numpy as np
from lxml import etree

# Started as a script, this file's folder heads sys.path, not the repository root that holds
# ``tests.support`` (the server it starts, and its test job kinds).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.report import load_average, ms, positive_ints, render_table, say
from tests.support.live_server import ServerStartError, running_server

__all__ = ["ROW_LABELS", "main"]

TABLE_HEADER = ("measure", "value", "n", "median ms", "p95 ms", "max ms", "compared")
TABLE_RIGHT = {1, 2, 3, 4, 5}
"""Columns aligned right: the numbers."""

UWS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK = "http://www.w3.org/1999/xlink"
NS = {"uws": UWS, "xlink": XLINK}

TERMINAL_PHASES = frozenset({"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"})
"""Phases after which a UWS job never changes again (UWS 1.1 section 2.1.3)."""

REFERENCE_JOBS_PER_S = 0.37
"""GAVO DaCHS 2.7 TAP async create→run→wait→fetch on these machines (shared/peers/dachs/README.md)."""

TARGET_JOBS_PER_S = 37.0
"""vocloud's goal: 100 times the reference, end to end."""

TARGET_WAKE_MS = 50.0
"""vocloud's goal: a blocked WAIT answers within this long of the phase change."""

ROW_LABELS = (
    "full cycle, {n} client(s)",
    "WAIT wake-up after the phase change",
    "GET job document",
    "GET availability",
)
"""Beginnings of the table's rows (the quick test checks that they are printed)."""

_MAX_CONSECUTIVE_ERRORS = 5
"""A client gives up after this many failed cycles in a row (the server is probably gone)."""


class BenchmarkError(RuntimeError):
    """A request got an answer a UWS service should not give; the message says which and what."""


# -- what is measured, and where ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Target:
    """The UWS job list to measure and how its jobs are driven.

    Parameters
    ----------
    base_url
        Scheme, host and port of the service.
    kind_path
        Path of the UWS job list (``/jobs/sleep``; DaCHS TAP: ``/tap/async``).
    availability_path
        A small, cheap GET (VOSI availability), probed beside the job document.
    job_params
        Parameters of the trivial job of the throughput cycle.
    wake_params
        Parameters of the job whose completion wakes the blocked WAIT.
    run_via_phase
        Post ``PHASE=RUN`` to ``{job}/phase`` after creating, rather than
        ``PHASE=RUN`` with the creation (DaCHS ignores it there).
    wait
        ``WAIT`` value of the cycle's blocking requests (-1: as long as the
        server allows).
    job_timeout
        Seconds after which a job that has not finished counts as an error.
    """

    base_url: str
    kind_path: str
    availability_path: str
    job_params: tuple[tuple[str, str], ...]
    wake_params: tuple[tuple[str, str], ...]
    run_via_phase: bool
    wait: int
    job_timeout: float

    @property
    def list_url(self) -> str:
        """The job list, where jobs are created."""
        return self.base_url.rstrip("/") + self.kind_path

    @property
    def availability_url(self) -> str:
        """The availability endpoint."""
        return self.base_url.rstrip("/") + self.availability_path


@dataclass(frozen=True, kw_only=True)
class JobDocument:
    """The parts of a ``uws:job`` document the benchmark needs."""

    phase: str
    start_time: datetime | None
    end_time: datetime | None
    result_href: str | None


def _parse_time(text: str | None) -> datetime | None:
    if not text or not text.strip():
        return None
    value = datetime.fromisoformat(text.strip())
    # UWS times are UTC; a server that leaves the zone out still means UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_job(body: bytes, *, url: str) -> JobDocument:
    """Read a job document.

    Raises
    ------
    BenchmarkError
        Raised if the body is not a ``uws:job`` document.
    """
    try:
        root = etree.fromstring(body)
    except etree.XMLSyntaxError as e:
        msg = f"{url}: not XML: {body[:200]!r}"
        raise BenchmarkError(msg) from e
    if root.tag != f"{{{UWS}}}job":
        msg = f"{url}: expected a uws:job document, got {root.tag}"
        raise BenchmarkError(msg)
    result = root.find("uws:results/uws:result", NS)
    return JobDocument(
        phase=(root.findtext("uws:phase", namespaces=NS) or "").strip(),
        start_time=_parse_time(root.findtext("uws:startTime", namespaces=NS)),
        end_time=_parse_time(root.findtext("uws:endTime", namespaces=NS)),
        result_href=None if result is None else result.get(f"{{{XLINK}}}href"),
    )


# -- one job, step by step ----------------------------------------------------------------


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, sock_connect=10)


async def _expect(response: aiohttp.ClientResponse, statuses: Sequence[int], what: str) -> bytes:
    body = await response.read()
    if response.status not in statuses:
        msg = f"{what} {response.url}: HTTP {response.status} (expected {list(statuses)}): {body[:300]!r}"
        raise BenchmarkError(msg)
    return body


async def create_job(
    session: aiohttp.ClientSession, target: Target, params: Sequence[tuple[str, str]], *, run: bool
) -> str:
    """POST a new job and return its URL (from the 303's Location).

    Raises
    ------
    BenchmarkError
        Raised if the service does not answer 303 with a Location.
    """
    data = list(params)
    if run and not target.run_via_phase:
        data.append(("PHASE", "RUN"))
    async with session.post(target.list_url, data=data, allow_redirects=False, timeout=_timeout(60)) as r:
        await _expect(r, (303,), "create")
        location = r.headers.get("Location")
    if not location:
        msg = f"create {target.list_url}: 303 without a Location"
        raise BenchmarkError(msg)
    job_url = urllib.parse.urljoin(target.list_url, location)
    if run and target.run_via_phase:
        await start_job(session, job_url)
    return job_url


async def start_job(session: aiohttp.ClientSession, job_url: str) -> None:
    """POST ``PHASE=RUN`` to the job's phase."""
    async with session.post(
        f"{job_url}/phase", data={"PHASE": "RUN"}, allow_redirects=False, timeout=_timeout(60)
    ) as r:
        await _expect(r, (200, 303), "run")


@dataclass(frozen=True, kw_only=True)
class Finished:
    """A job seen in a terminal phase by a blocking ``WAIT``."""

    doc: JobDocument
    sent: float
    """Epoch time the final WAIT request was sent."""
    arrived: float
    """Epoch time its response had been read."""
    requests: int
    """WAIT requests it took (each phase change wakes one)."""


async def wait_until_finished(session: aiohttp.ClientSession, job_url: str, *, wait: int, timeout: float) -> Finished:
    """Block with ``WAIT`` (and ``PHASE`` once known) until the job reaches a terminal phase.

    ``PHASE`` is the last phase seen, so a change that happens between two
    requests makes the next one return at once instead of blocking for nothing.

    Raises
    ------
    BenchmarkError
        Raised if the job is not finished within ``timeout`` seconds.
    """
    deadline = time.perf_counter() + timeout
    phase: str | None = None
    requests = 0
    # A client-side limit beyond the server's: the server ends a WAIT, not us.
    request_timeout = _timeout((wait if wait >= 0 else 3600) + 60)
    while True:
        query = {"WAIT": str(wait)}
        if phase is not None:
            query["PHASE"] = phase
        sent = time.time()
        async with session.get(job_url, params=query, timeout=request_timeout) as r:
            body = await _expect(r, (200,), "wait")
        arrived = time.time()
        requests += 1
        doc = parse_job(body, url=job_url)
        if doc.phase in TERMINAL_PHASES:
            return Finished(doc=doc, sent=sent, arrived=arrived, requests=requests)
        if time.perf_counter() > deadline:
            msg = f"{job_url}: still {doc.phase} after {timeout:g} s"
            raise BenchmarkError(msg)
        phase = doc.phase


async def fetch_result(session: aiohttp.ClientSession, job_url: str, doc: JobDocument) -> int:
    """GET the first result (its href in the job document, else ``{job}/results/result``); its size."""
    href = urllib.parse.urljoin(job_url + "/", doc.result_href or f"{job_url}/results/result")
    async with session.get(href, timeout=_timeout(60)) as r:
        return len(await _expect(r, (200,), "result"))


async def delete_job(session: aiohttp.ClientSession, job_url: str) -> None:
    """DELETE the job (UWS answers 303 to the job list)."""
    async with session.delete(job_url, allow_redirects=False, timeout=_timeout(60)) as r:
        await _expect(r, (200, 204, 303), "delete")


@dataclass(frozen=True, kw_only=True)
class Cycle:
    """Durations (s) of the steps of one full job cycle."""

    create: float
    """POST (with PHASE=RUN, or followed by POST {job}/phase)."""
    wait: float
    """From the end of the creation to the WAIT response showing a terminal phase."""
    result: float
    delete: float
    waits: int
    """WAIT requests it took."""

    @property
    def total(self) -> float:
        """The whole cycle."""
        return self.create + self.wait + self.result + self.delete


async def job_cycle(session: aiohttp.ClientSession, target: Target) -> Cycle:
    """Create → run → WAIT until terminal → fetch the result → DELETE, timing each step.

    Raises
    ------
    BenchmarkError
        Raised if a step fails or the job does not complete.
    """
    t0 = time.perf_counter()
    job_url = await create_job(session, target, target.job_params, run=True)
    t1 = time.perf_counter()
    finished = await wait_until_finished(session, job_url, wait=target.wait, timeout=target.job_timeout)
    t2 = time.perf_counter()
    if finished.doc.phase != "COMPLETED":
        await delete_job(session, job_url)
        msg = f"{job_url}: ended {finished.doc.phase}"
        raise BenchmarkError(msg)
    await fetch_result(session, job_url, finished.doc)
    t3 = time.perf_counter()
    await delete_job(session, job_url)
    t4 = time.perf_counter()
    return Cycle(create=t1 - t0, wait=t2 - t1, result=t3 - t2, delete=t4 - t3, waits=finished.requests)


# -- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Stats:
    """Median, 95th percentile and maximum of a sample, in milliseconds."""

    n: int
    median_ms: float
    p95_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Stats | None:
        """Statistics of durations given in seconds; ``None`` for an empty sample."""
        if not seconds:
            return None
        ms = np.asarray(seconds, dtype=float) * 1000.0
        return cls(
            n=len(ms),
            median_ms=float(np.median(ms)),
            p95_ms=float(np.percentile(ms, 95)),
            max_ms=float(ms.max()),
        )


@dataclass(kw_only=True)
class Failures:
    """Failed requests of one measurement, with the first message (the rest are usually alike)."""

    count: int = 0
    first: str | None = None

    def add(self, error: BaseException) -> None:
        """Record one failure."""
        self.count += 1
        if self.first is None:
            self.first = f"{type(error).__name__}: {error}"[:300]


_REQUEST_ERRORS = (BenchmarkError, aiohttp.ClientError, TimeoutError)
"""What a failed request raises; anything else is a bug of this script and should surface."""


# -- CPU accounting (Linux /proc) ---------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a process, or ``None`` if it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; everything after its ")" is numeric.
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants_cpu(root: int) -> float:
    """CPU seconds of every live descendant of ``root`` (the forkserver and the pool's workers)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


@dataclass(frozen=True, kw_only=True)
class CpuUse:
    """CPU seconds of the server process, of its descendants (job workers), and of this client."""

    server_s: float
    workers_s: float
    client_s: float

    @classmethod
    def now(cls, server_pid: int | None) -> CpuUse | None:
        """The counters now; ``None`` without a server PID or where /proc cannot be read."""
        if server_pid is None:
            return None
        server = _proc_stat(server_pid)
        if server is None:
            return None
        return cls(server_s=server[1], workers_s=_descendants_cpu(server_pid), client_s=time.process_time())

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(
            server_s=self.server_s - other.server_s,
            workers_s=self.workers_s - other.workers_s,
            client_s=self.client_s - other.client_s,
        )


# -- 1. throughput ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class Throughput:
    """Full cycles completed by ``clients`` concurrent clients."""

    clients: int
    wall_s: float = 0.0
    cycles: list[Cycle] = field(default_factory=list)
    failures: Failures = field(default_factory=Failures)
    cpu: CpuUse | None = None
    """CPU seconds spent meanwhile, where the processes can be seen (a server started here)."""

    @property
    def jobs_per_s(self) -> float:
        """Completed cycles per second of wall time."""
        return len(self.cycles) / self.wall_s if self.wall_s > 0 else 0.0


async def measure_throughput(
    target: Target, *, clients: int, duration: float, max_jobs: int | None, server_pid: int | None = None
) -> Throughput:
    """Run full cycles back to back from ``clients`` clients for ``duration`` s (or ``max_jobs`` jobs).

    Clients start no new cycle after the deadline; the wall time runs until
    the last cycle has finished, so jobs/s counts whole cycles only. With
    ``server_pid``, the CPU time of the server and of its worker processes is
    recorded too: on two shared cores it tells a saturated machine from a
    server that waits for something.
    """
    result = Throughput(clients=clients)
    tickets = itertools.count()
    cpu_before = CpuUse.now(server_pid)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        started = time.perf_counter()
        deadline = started + duration

        async def client() -> None:
            consecutive = 0
            while time.perf_counter() < deadline and (max_jobs is None or next(tickets) < max_jobs):
                try:
                    result.cycles.append(await job_cycle(session, target))
                    consecutive = 0
                except _REQUEST_ERRORS as e:
                    result.failures.add(e)
                    consecutive += 1
                    if consecutive >= _MAX_CONSECUTIVE_ERRORS:
                        return

        await asyncio.gather(*(client() for _ in range(clients)))
        result.wall_s = time.perf_counter() - started
    cpu_after = CpuUse.now(server_pid)
    if cpu_before is not None and cpu_after is not None:
        result.cpu = cpu_after - cpu_before
    return result


async def warm_up(target: Target, *, jobs: int, clients: int) -> Failures:
    """Run a few cycles first, unmeasured: worker processes start and import on their first job."""
    failures = Failures()
    if jobs <= 0:
        return failures
    async with aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(max(1, clients))

        async def one() -> None:
            async with semaphore:
                try:
                    await job_cycle(session, target)
                except _REQUEST_ERRORS as e:
                    failures.add(e)

        await asyncio.gather(*(one() for _ in range(jobs)))
    return failures


# -- 2. WAIT wake-up ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class WakeUp:
    """Latencies from a job's ``endTime`` to the arrival of the blocked WAIT's response."""

    latencies: list[float] = field(default_factory=list)
    not_blocked: int = 0
    """Jobs that had already finished when the last WAIT was sent (nothing to measure)."""
    run_overheads: list[float] = field(default_factory=list)
    """endTime - startTime - the job's nominal run time: what the executor adds to a job."""
    failures: Failures = field(default_factory=Failures)


async def measure_wake_up(target: Target, *, repeats: int, nominal_s: float | None) -> WakeUp:
    """Run ``repeats`` short jobs one at a time, each watched by a client blocked in ``WAIT=30``."""
    result = WakeUp()
    async with aiohttp.ClientSession() as session:
        for _ in range(repeats):
            try:
                job_url = await create_job(session, target, target.wake_params, run=True)
                finished = await wait_until_finished(session, job_url, wait=30, timeout=target.job_timeout)
                await delete_job(session, job_url)
            except _REQUEST_ERRORS as e:
                result.failures.add(e)
                continue
            doc = finished.doc
            if doc.end_time is None:
                result.failures.add(BenchmarkError(f"{job_url}: no endTime in a {doc.phase} job"))
                continue
            end = doc.end_time.timestamp()
            if finished.sent >= end:
                result.not_blocked += 1
            else:
                result.latencies.append(finished.arrived - end)
            if nominal_s is not None and doc.start_time is not None:
                result.run_overheads.append(end - doc.start_time.timestamp() - nominal_s)
    return result


# -- 3. many waiters --------------------------------------------------------------------------


@dataclass(kw_only=True)
class Probes:
    """Latencies of the two small GETs, measured alternately so both see the same conditions."""

    job: list[float] = field(default_factory=list)
    availability: list[float] = field(default_factory=list)


@dataclass(kw_only=True)
class Waiters:
    """Small-GET latencies before, during and after ``waiters`` clients block in a long WAIT."""

    waiters: int
    held: int = 0
    """Waiters still blocked when the loaded probes ended (all of them, on a server that blocks)."""
    released_s: float | None = None
    """Time from deleting their jobs until every waiter had its answer."""
    before: Probes = field(default_factory=Probes)
    loaded: Probes = field(default_factory=Probes)
    after: Probes = field(default_factory=Probes)
    failures: Failures = field(default_factory=Failures)


async def _probe(session: aiohttp.ClientSession, urls: tuple[str, str], count: int, into: Probes) -> None:
    for _ in range(count):
        for url, sample in zip(urls, (into.job, into.availability), strict=True):
            t0 = time.perf_counter()
            async with session.get(url, timeout=_timeout(30)) as r:
                await _expect(r, (200,), "probe")
            sample.append(time.perf_counter() - t0)


async def _bounded(coroutines: Sequence[Awaitable[object]], limit: int) -> list[object | BaseException]:
    semaphore = asyncio.Semaphore(limit)

    async def one(c: Awaitable[object]) -> object:
        async with semaphore:
            return await c

    return await asyncio.gather(*(one(c) for c in coroutines), return_exceptions=True)


async def measure_waiters(target: Target, *, waiters: int, probes: int, wait: int = 60) -> Waiters:
    """Probe small GETs with no waiters, with ``waiters`` clients in ``WAIT`` on PENDING jobs, and after.

    The waiters' requests are sent on their own connections (a separate
    session without a connection limit); the probes reuse one keep-alive
    connection, as a client of the service would.
    """
    result = Waiters(waiters=waiters)
    async with aiohttp.ClientSession() as session:
        # The job document probed is that of a completed job: it cannot change
        # while measured, and rendering it exercises the store and the renderer.
        probe_job = await create_job(session, target, target.job_params, run=True)
        await wait_until_finished(session, probe_job, wait=target.wait, timeout=target.job_timeout)
        urls = (probe_job, target.availability_url)
        pending: list[str] = []
        for outcome in await _bounded(
            [create_job(session, target, target.job_params, run=False) for _ in range(waiters)], 8
        ):
            if isinstance(outcome, str):
                pending.append(outcome)
            elif isinstance(outcome, _REQUEST_ERRORS):
                result.failures.add(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        try:
            await _probe(session, urls, max(3, probes // 20), Probes())  # connection and caches warm
            await _probe(session, urls, probes, result.before)
            result.held, result.released_s = await _with_waiters(
                session,
                pending,
                wait=wait,
                probe=lambda: _probe(session, urls, probes, result.loaded),
                failures=result.failures,
            )
            await _probe(session, urls, probes, result.after)
        except _REQUEST_ERRORS as e:
            result.failures.add(e)
        finally:
            # _with_waiters deletes (and forgets) the PENDING jobs; what is left here failed on the way.
            await _bounded([delete_job(session, url) for url in [probe_job, *pending]], 8)
    return result


async def _with_waiters(
    session: aiohttp.ClientSession,
    pending: list[str],
    *,
    wait: int,
    probe: Callable[[], Awaitable[None]],
    failures: Failures,
) -> tuple[int, float | None]:
    """Put one blocked WAIT on each PENDING job, run ``probe``, then delete the jobs to release them.

    Returns how many waiters were still blocked after the probes, and how long
    the release took after the deletions. The jobs deleted are removed from
    ``pending``.
    """
    sent = 0
    all_sent = asyncio.Event()

    async def on_headers_sent(
        _session: aiohttp.ClientSession,
        _context: SimpleNamespace,
        _params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        nonlocal sent
        sent += 1
        if sent >= len(pending):
            all_sent.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers_sent)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as waiting:

        async def waiter(url: str) -> int:
            async with waiting.get(url, params={"WAIT": str(wait)}, timeout=_timeout(wait + 60)) as r:
                await r.read()
                return r.status

        tasks = [asyncio.create_task(waiter(url)) for url in pending]
        try:
            await asyncio.wait_for(all_sent.wait(), 30)
            # The requests are written; give the server a moment to read them and block.
            await asyncio.sleep(0.5)
            await probe()
            held = sum(not t.done() for t in tasks)
            t0 = time.perf_counter()
            outcomes = await _bounded([delete_job(session, url) for url in pending], 8)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    failures.add(outcome)
            pending[:] = [url for url, o in zip(pending, outcomes, strict=True) if isinstance(o, BaseException)]
            done, _ = await asyncio.wait(tasks, timeout=30) if tasks else (set(), set())
            released = time.perf_counter() - t0 if len(done) == len(tasks) else None
            return held, released
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


# -- the report -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Report:
    """Everything measured in one run."""

    server: str
    throughput: list[Throughput] = field(default_factory=list)
    wake: WakeUp | None = None
    waiters: Waiters | None = None
    warm_up: Failures = field(default_factory=Failures)

    @property
    def failures(self) -> int:
        """Failed requests over all measurements."""
        count = self.warm_up.count + sum(t.failures.count for t in self.throughput)
        count += self.wake.failures.count if self.wake else 0
        count += self.waiters.failures.count if self.waiters else 0
        return count


def _median(stats: Stats | None) -> str:
    return "-" if stats is None else ms(stats.median_ms)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _stats_cells(stats: Stats | None) -> list[str]:
    if stats is None:
        return ["-", "-", "-", "-"]
    return [str(stats.n), ms(stats.median_ms), ms(stats.p95_ms), ms(stats.max_ms)]


def _ratio(loaded: Stats | None, baseline: Stats | None) -> str:
    if loaded is None or baseline is None or baseline.median_ms <= 0:
        return "-"
    return f"x{loaded.median_ms / baseline.median_ms:.2f} of no waiters"


def table_rows(report: Report, *, reference: float, target_jobs: float, target_wake_ms: float) -> list[list[str]]:
    """The rows of the summary table: measure, value, n, median, p95, max, comparison."""
    rows: list[list[str]] = []
    for t in report.throughput:
        stats = Stats.of([c.total for c in t.cycles])
        compared = (
            f"{t.jobs_per_s / reference:.0f}x DaCHS {reference:g} jobs/s;"
            f" target ≥ {target_jobs:g}: {_met(t.jobs_per_s >= target_jobs)}"
        )
        if t.failures.count:
            compared += f"; {t.failures.count} failed"
        label = ROW_LABELS[0].format(n=t.clients)
        rows.append([f"{label} (jobs/s; cycle ms)", f"{t.jobs_per_s:.1f}", *_stats_cells(stats), compared])
    if report.wake is not None:
        wake = report.wake
        stats = Stats.of(wake.latencies)
        compared = "-" if stats is None else f"target ≤ {target_wake_ms:g} ms: {_met(stats.max_ms <= target_wake_ms)}"
        if wake.not_blocked:
            compared += f"; {wake.not_blocked} not blocked"
        if wake.failures.count:
            compared += f"; {wake.failures.count} failed"
        rows.append([f"{ROW_LABELS[1]} (ms)", _median(stats), *_stats_cells(stats), compared])
    if report.waiters is not None:
        w = report.waiters
        for label, attr in ((ROW_LABELS[2], "job"), (ROW_LABELS[3], "availability")):
            before: list[float] = getattr(w.before, attr)
            after: list[float] = getattr(w.after, attr)
            baseline = Stats.of(before + after)
            loaded = Stats.of(getattr(w.loaded, attr))
            rows.append(
                [
                    f"{label}, no waiters (ms)",
                    _median(baseline),
                    *_stats_cells(baseline),
                    "before and after the waiters",
                ]
            )
            held = f"{w.held}/{w.waiters} held"
            rows.append(
                [
                    f"{label}, {w.waiters} waiters in WAIT (ms)",
                    _median(loaded),
                    *_stats_cells(loaded),
                    f"{_ratio(loaded, baseline)}; {held}",
                ]
            )
    return rows


def breakdown(report: Report) -> list[str]:
    """Lines saying where a cycle's time goes, and what the executor adds to a job."""
    lines = []
    for t in report.throughput:
        if not t.cycles:
            continue
        med = {
            name: float(np.median([getattr(c, name) for c in t.cycles])) * 1000
            for name in ("create", "wait", "result", "delete")
        }
        waits = float(np.mean([c.waits for c in t.cycles]))
        if t.cpu is not None:
            jobs = len(t.cycles)
            lines.append(
                f"  {t.clients} client(s), CPU per job: server {t.cpu.server_s / jobs * 1000:.1f} ms,"
                f" job workers {t.cpu.workers_s / jobs * 1000:.1f} ms, this client"
                f" {t.cpu.client_s / jobs * 1000:.1f} ms; machine busy"
                f" {(t.cpu.server_s + t.cpu.workers_s + t.cpu.client_s) / t.wall_s:.2f} of"
                f" {os.cpu_count()} cores (server {t.cpu.server_s / t.wall_s:.2f})"
            )
        lines.append(
            f"  {t.clients} client(s), medians: create {med['create']:.1f} ms, run+WAIT {med['wait']:.1f} ms"
            f" ({waits:.1f} WAIT requests/job), result {med['result']:.1f} ms, delete {med['delete']:.1f} ms;"
            f" {len(t.cycles)} jobs in {t.wall_s:.1f} s"
        )
    if report.wake is not None and report.wake.run_overheads:
        over = Stats.of(report.wake.run_overheads)
        assert over is not None
        lines.append(
            "  executor overhead of a job (endTime - startTime - nominal run):"
            f" median {over.median_ms:.1f} ms, max {over.max_ms:.1f} ms"
        )
    if report.waiters is not None and report.waiters.released_s is not None:
        lines.append(
            f"  {report.waiters.waiters} waiters answered"
            f" {report.waiters.released_s * 1000:.0f} ms after their jobs were deleted"
        )
    return lines


def first_failures(report: Report) -> list[str]:
    """The first failure message of each measurement that had one."""
    named: list[tuple[str, Failures]] = [("warm-up", report.warm_up)]
    named += [(f"{t.clients} client(s)", t.failures) for t in report.throughput]
    if report.wake:
        named.append(("wake-up", report.wake.failures))
    if report.waiters:
        named.append(("waiters", report.waiters.failures))
    return [f"  {name}: {f.count} failed, first: {f.first}" for name, f in named if f.count]


# -- the command line ------------------------------------------------------------------------------


def _query_string(text: str) -> tuple[tuple[str, str], ...]:
    try:
        return tuple(urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
    except ValueError as e:
        msg = f"not a query string: {text!r}"
        raise argparse.ArgumentTypeError(msg) from e


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (defaults are for the full run; ``--quick`` shortens them)."""
    parser = argparse.ArgumentParser(
        prog="uws_throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_argument_group("what to measure")
    where.add_argument("--base-url", help="measure this running server instead of starting vocloud")
    where.add_argument("--workers", type=int, default=2, help="--workers of the started server (default 2)")
    where.add_argument("--kind-path", default="/jobs/sleep", help="the UWS job list (default /jobs/sleep)")
    where.add_argument(
        "--availability-path", default="/jobs/availability",
        help="small GET probed beside the job document, and polled until the server is up"
        " (default /jobs/availability; DaCHS TAP: /tap/availability)",
    )  # fmt: skip
    where.add_argument(
        "--job-params", type=_query_string, default=_query_string("seconds=0"),
        help="parameters of the trivial job, as a query string (default 'seconds=0')",
    )  # fmt: skip
    where.add_argument(
        "--wake-params", type=_query_string, default=_query_string("seconds=0.3"),
        help="parameters of the job that wakes the blocked WAIT (default 'seconds=0.3'; its 'seconds',"
        " if any, is taken as the job's nominal run time)",
    )  # fmt: skip
    where.add_argument(
        "--run-via-phase", action="store_true",
        help="post PHASE=RUN to {job}/phase after creation (DaCHS ignores PHASE=RUN at creation)",
    )  # fmt: skip
    where.add_argument("--wait", type=int, default=-1, help="WAIT of the cycle's blocking GETs (default -1)")
    how = parser.add_argument_group("how long")
    how.add_argument(
        "--concurrency", type=positive_ints("client count"), default=(1, 8), help="client counts (default 1,8)"
    )
    how.add_argument("--duration", type=float, help="seconds per client count (default 10; --quick 3)")
    how.add_argument("--jobs", type=int, help="also stop each client count after this many jobs")
    how.add_argument("--warmup", type=int, default=8, help="unmeasured cycles first (default 8)")
    how.add_argument("--wake-repeats", type=int, help="jobs of the wake-up test (default 20; --quick 8)")
    how.add_argument("--waiters", type=int, default=100, help="clients blocked in WAIT (default 100)")
    how.add_argument("--probes", type=int, help="probe GETs per phase of the waiter test (default 300; --quick 100)")
    how.add_argument("--job-timeout", type=float, default=120.0, help="seconds a job may take (default 120)")
    how.add_argument("--quick", action="store_true", help="shorter defaults: about 20 s in all")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--reference",
        type=float,
        default=REFERENCE_JOBS_PER_S,
        help=f"reference jobs/s (default GAVO DaCHS 2.7: {REFERENCE_JOBS_PER_S})",
    )
    out.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser


def _nominal_seconds(params: Sequence[tuple[str, str]]) -> float | None:
    for name, value in params:
        if name.lower() == "seconds":
            with contextlib.suppress(ValueError):
                return float(value)
    return None


async def run_all(args: argparse.Namespace, target: Target, server: str, *, server_pid: int | None = None) -> Report:
    """Every measurement, one after the other, against one server."""
    report = Report(server=server)
    say(f"warming up with {args.warmup} jobs")
    report.warm_up = await warm_up(target, jobs=args.warmup, clients=max(args.concurrency))
    for clients in args.concurrency:
        say(f"full cycles from {clients} client(s) for {args.duration:g} s")
        report.throughput.append(
            await measure_throughput(
                target, clients=clients, duration=args.duration, max_jobs=args.jobs, server_pid=server_pid
            )
        )
    say(f"WAIT wake-up, {args.wake_repeats} jobs")
    report.wake = await measure_wake_up(
        target, repeats=args.wake_repeats, nominal_s=_nominal_seconds(target.wake_params)
    )
    if args.waiters > 0:
        say(f"{args.waiters} waiters, {args.probes} probes per phase")
        report.waiters = await measure_waiters(target, waiters=args.waiters, probes=args.probes)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table; exit 1 if any request failed (the figures are then suspect)."""
    args = build_parser().parse_args(argv)
    args.duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    args.wake_repeats = args.wake_repeats if args.wake_repeats is not None else (8 if args.quick else 20)
    args.probes = args.probes if args.probes is not None else (100 if args.quick else 300)

    def target_at(base_url: str) -> Target:
        return Target(
            base_url=base_url,
            kind_path=args.kind_path,
            availability_path=args.availability_path,
            job_params=args.job_params,
            wake_params=args.wake_params,
            run_via_phase=args.run_via_phase,
            wait=args.wait,
            job_timeout=args.job_timeout,
        )

    load_before = load_average()
    started = time.perf_counter()
    try:
        if args.base_url:
            server = f"{args.base_url} (already running)"
            report = asyncio.run(run_all(args, target_at(args.base_url), server))
        else:
            with tempfile.TemporaryDirectory(prefix="vocloud-bench-") as tmp:
                log = Path(tmp) / "server.log"
                # Its PID roots the process tree whose CPU time is read from /proc.
                with running_server(
                    workers=args.workers,
                    data_dir=Path(tmp) / "data",
                    log_path=log,
                    ready_path=args.availability_path,
                ) as started_server:
                    server = f"{started_server.base_url} (vocloud serve --workers {args.workers}, started here)"
                    say(f"server up: {server}")
                    target = target_at(started_server.base_url)
                    report = asyncio.run(run_all(args, target, server, server_pid=started_server.pid))
    except (*_REQUEST_ERRORS, ServerStartError) as e:
        print(f"uws_throughput: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    target = target_at(args.base_url or "")
    run = "POST {job}/phase PHASE=RUN" if args.run_via_phase else "PHASE=RUN at creation"
    print(f"UWS job engine end to end over HTTP: {report.server}")
    job = urllib.parse.urlencode(args.job_params)
    print(f"job list {target.kind_path}, job {job!r}, {run}, WAIT={args.wait};", end=" ")
    print(f"{args.duration:g} s per client count")
    print(
        f"python {platform.python_version()}, aiohttp {aiohttp.__version__}, {os.cpu_count()} cores;"
        f" load average before {load_before}, after {load_average()};"
        f" {time.perf_counter() - started:.0f} s in all"
    )
    print()
    rows = table_rows(report, reference=args.reference, target_jobs=TARGET_JOBS_PER_S, target_wake_ms=TARGET_WAKE_MS)
    print(render_table(TABLE_HEADER, rows, right=TABLE_RIGHT))
    print()
    print("Where the time goes:")
    for line in breakdown(report):
        print(line)
    failures = first_failures(report)
    if failures:
        print("Failures:")
        for line in failures:
            print(line)
    if args.json is not None:
        figures = {"args": {k: str(v) for k, v in vars(args).items()}, "report": asdict(report)}
        args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
