"""`VocloudClient`: one object for a vocloud server — its services, job kinds, jobs and active-learning sessions.

The generic UWS work is `vocloud.client.uws.UWSClient` (shared as ``.uws``,
over the same HTTP session); this module adds what only a vocloud server has:
the VOSI capabilities of its services, the description of its job kinds
(``GET /jobs``), and the active-learning sessions of ``/sessions`` with their
oracle batches and candidates read as astropy tables.

Credentials (HTTP Basic) are sent only to the server's own origin and only
once it has asked for them (401 with ``WWW-Authenticate: Basic``), so an
anonymous server, or another host reached through the same session (a remote
SSA service, a result on a mirror), never sees them. They come from the
arguments, else ``VOCLOUD_USER`` / ``VOCLOUD_PASSWORD``, else a prompt the
caller supplies.
"""

from __future__ import annotations

import io
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests.auth import AuthBase, _basic_auth_str
from requests.cookies import extract_cookies_to_jar

from .errors import EXIT_JOB_FAILED, ClientTimeoutError, VocloudError
from .uws import Upload, UWSClient, UWSError

if TYPE_CHECKING:
    from astropy.table import Table

    from .labels import LabelRecord

__all__ = [
    "VOCLOUD_SERVICES",
    "BasicAuthOnChallenge",
    "Capability",
    "IterationFailedError",
    "JobKindInfo",
    "KindParameter",
    "VocloudClient",
]

VOCLOUD_SERVICES = ("jobs", "ssa", "datalink", "soda")
"""Paths of a vocloud server's IVOA services, each with VOSI ``capabilities`` below it."""

PENDING_STATUSES = frozenset({"queued", "running"})
"""Iteration statuses of a session document while its job has not ended."""

_FIRST_POLL_S = 0.5
_MAX_POLL_S = 10.0
"""Bounds of the pause between two reads of a session while an iteration it awaits has not been created."""


class IterationFailedError(VocloudError):
    """An active-learning iteration ended without an outcome (its job failed, was aborted or deleted)."""

    exit_code: ClassVar[int] = EXIT_JOB_FAILED


@dataclass(frozen=True)
class Capability:
    """One capability of one of the server's services (VOSI).

    Attributes
    ----------
    service
        The service path it was listed under (``jobs``, ``ssa``...).
    standard_id
        The IVOA standard, e.g. ``ivo://ivoa.net/std/SSA``.
    access_url
        Where it is served.
    """

    service: str
    standard_id: str
    access_url: str


@dataclass(frozen=True)
class KindParameter:
    """A typed parameter of a job kind, as ``GET /jobs`` describes it."""

    name: str
    type: str
    description: str = ""
    required: bool = False
    multiple: bool = False
    unit: str | None = None
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> KindParameter:
        """Read one entry of a kind's ``parameters``."""
        return cls(
            name=str(value["name"]),
            type=str(value.get("type", "string")),
            description=str(value.get("description", "")),
            required=bool(value.get("required", False)),
            multiple=bool(value.get("multiple", False)),
            unit=value.get("unit"),
            default=value.get("default"),
            minimum=value.get("minimum"),
            maximum=value.get("maximum"),
            choices=tuple(value.get("choices", ())),
        )


@dataclass(frozen=True)
class JobKindInfo:
    """A job kind the server offers: its job list URL, typed parameters and results."""

    name: str
    url: str
    title: str = ""
    description: str = ""
    parameters: tuple[KindParameter, ...] = ()
    results: tuple[tuple[str, str], ...] = ()
    """(name, MIME type) of each result."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The description as the server sent it."""

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> JobKindInfo:
        """Read one entry of ``GET /jobs``'s ``kinds``."""
        return cls(
            name=str(value["name"]),
            url=str(value["url"]),
            title=str(value.get("title", "")),
            description=str(value.get("description", "")),
            parameters=tuple(KindParameter.from_json(p) for p in value.get("parameters", ())),
            results=tuple((str(r["name"]), str(r.get("mime_type", ""))) for r in value.get("results", ())),
            raw=value,
        )

    def parameter(self, name: str) -> KindParameter | None:
        """The parameter called ``name`` (case-insensitive, as DALI names are), or None."""
        return next((p for p in self.parameters if p.name.lower() == name.lower()), None)


PasswordSource = str | Callable[[], str | None] | None
"""A password, or a function asked for it when the server first wants it (e.g. a prompt)."""


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class BasicAuthOnChallenge(AuthBase):
    """HTTP Basic for one origin, sent after the first 401 challenge there and preemptively from then on.

    Like requests' own ``HTTPDigestAuth``, the 401 is answered by re-sending the
    same request with credentials (a file body is rewound first). Credentials
    never go to another origin, and a password source that is a function (a
    prompt) is called once, only if the server asks.

    Parameters
    ----------
    origin_url
        The server whose challenges are answered.
    user
        The user name.
    password
        The password, or a function returning it (None: no credentials after all).
    """

    def __init__(self, origin_url: str, user: str, password: PasswordSource) -> None:
        self.origin = _origin(origin_url)
        self.user = user
        self._password = password
        self._resolved: str | None = password if isinstance(password, str) else None
        self._challenged = False
        self._lock = threading.Lock()
        self._local = threading.local()

    def _password_now(self) -> str | None:
        with self._lock:
            if self._resolved is None and callable(self._password):
                self._resolved = self._password()
                self._password = self._resolved  # ask once, even if the answer was None
            return self._resolved

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if r.url is None or _origin(r.url) != self.origin:
            return r
        if self._challenged and (password := self._password_now()) is not None:
            r.headers["Authorization"] = _basic_auth_str(self.user, password)
        try:
            self._local.position = r.body.tell() if hasattr(r.body, "tell") else None  # type: ignore[union-attr]
        except OSError:
            self._local.position = None
        r.register_hook("response", self._on_response)
        return r

    def _on_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        challenge = response.headers.get("WWW-Authenticate", "")
        if (
            response.status_code != 401
            or not challenge.lower().lstrip().startswith("basic")
            or "Authorization" in request.headers  # refused: re-sending the same would loop
        ):
            return response
        password = self._password_now()
        if password is None:
            return response
        self._challenged = True
        position = getattr(self._local, "position", None)
        if position is not None:
            request.body.seek(position)  # type: ignore[union-attr]
        response.content  # noqa: B018 - drain, so that the connection can be reused
        response.close()
        retry = request.copy()
        if retry._cookies is not None:  # cookies set by the 401 (a session cookie) go with the retry
            extract_cookies_to_jar(retry._cookies, request, response.raw)
            retry.prepare_cookies(retry._cookies)
        retry.headers["Authorization"] = _basic_auth_str(self.user, password)
        answer: requests.Response = response.connection.send(retry, **kwargs)
        answer.history.append(response)
        answer.request = retry
        return answer


class VocloudClient:
    """A vocloud server: capabilities, job kinds, UWS jobs and active-learning sessions.

    Parameters
    ----------
    url
        The server's base URL.
    user
        User name for HTTP Basic; default ``VOCLOUD_USER``.
    password
        Password; default ``VOCLOUD_PASSWORD``, else ``password_prompt``.
    http
        The requests session to use (its ``auth`` is set when credentials are known).
    timeout
        Seconds to connect and start receiving each answer, on top of any blocking ``WAIT``.
    password_prompt
        Asked for the password when the server wants one and none was given.
    """

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        http: requests.Session | None = None,
        timeout: float = 60.0,
        password_prompt: Callable[[], str | None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._owns_http = http is None
        self.http = http if http is not None else requests.Session()
        self.timeout = timeout
        user = user or os.environ.get("VOCLOUD_USER") or None
        secret: PasswordSource = password or os.environ.get("VOCLOUD_PASSWORD") or password_prompt
        if user:
            self.http.auth = BasicAuthOnChallenge(self.url, user, secret)
        self.user = user
        self.uws = UWSClient(self.http, timeout=timeout)

    def close(self) -> None:
        """Close the HTTP session, if this client made it."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> VocloudClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VocloudClient({self.url!r}, user={self.user!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def absolute(self, path_or_url: str) -> str:
        """An absolute URL: given as one, or a path on the server."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.url}/{path_or_url.lstrip('/')}"

    def _json(self, method: str, path_or_url: str, **kwargs: Any) -> Any:
        response = self.uws.request(method, self.absolute(path_or_url), **kwargs)
        try:
            return response.json()
        except ValueError as e:
            msg = f"{response.url} did not answer JSON ({response.headers.get('Content-Type', 'no content type')})"
            raise VocloudError(msg, status=response.status_code, url=response.url) from e

    def table(self, url: str) -> Table:
        """Fetch a VOTable (with this client's credentials) and read its first table with astropy.

        Raises
        ------
        VocloudError
            Raised if the fetch fails, or the answer is a DALI error or not a VOTable.
        """
        # Imported here: astropy takes most of a second, which `vocloud --help` should not pay.
        from astropy.io.votable import parse  # noqa: PLC0415
        from astropy.io.votable.exceptions import VOTableSpecError  # noqa: PLC0415

        response = self.uws.request("GET", self.absolute(url))
        try:
            document = parse(io.BytesIO(response.content), verify="ignore")
            votable = document.get_first_table()
        except (VOTableSpecError, ValueError, IndexError) as e:
            msg = f"{url} is not a readable VOTable: {e}"
            raise VocloudError(msg, url=url) from e
        status = next((info for resource in document.resources for info in resource.infos
                       if info.name == "QUERY_STATUS"), None)  # fmt: skip
        if status is not None and str(status.value).upper() == "ERROR":
            raise VocloudError(str(status.content or status.value), url=url)
        table: Table = votable.to_table(use_names_over_ids=True)
        return table

    # -- the service ------------------------------------------------------------------------

    def capabilities(self, services: Sequence[str] = VOCLOUD_SERVICES) -> list[Capability]:
        """The VOSI capabilities of the server's services (a service answering 404 is left out).

        Parsed by pyvo; its parser does not know SSA's capability extension and
        warns about each of its elements, which are of no use here, so those
        warnings are silenced.

        Raises
        ------
        VocloudError
            Raised if the server cannot be reached or refuses the request.
        """
        from pyvo.io.vosi import parse_capabilities  # noqa: PLC0415 - see `table`

        found: list[Capability] = []
        for service in services:
            url = f"{self.url}/{service}/capabilities"
            try:
                response = self.uws.request("GET", url)
            except VocloudError as e:
                if e.status == 404:
                    continue
                raise
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = parse_capabilities(io.BytesIO(response.content), filename=url)
            for capability in parsed:
                for interface in capability.interfaces:
                    for access in interface.accessurls:
                        found.append(Capability(service, str(capability.standardid), str(access.content)))
        return found

    def kinds(self) -> list[JobKindInfo]:
        """The job kinds the server offers, with their typed parameters and results (``GET /jobs``)."""
        document = self._json("GET", "/jobs", headers={"Accept": "application/json"})
        return [JobKindInfo.from_json(k) for k in document.get("kinds", [])]

    def kind(self, name: str) -> JobKindInfo:
        """One job kind's description.

        Raises
        ------
        VocloudError
            Raised if the server offers no such kind (the message lists those it offers).
        """
        kinds = self.kinds()
        for kind in kinds:
            if kind.name == name:
                return kind
        msg = f"The server offers no job kind {name!r}; it offers {', '.join(k.name for k in kinds) or 'none'}"
        raise VocloudError(msg)

    # -- jobs -------------------------------------------------------------------------------

    def job_list_url(self, kind: str) -> str:
        """The UWS job list of a kind."""
        return f"{self.url}/jobs/{quote(kind, safe='')}"

    def job_url(self, job: str) -> str:
        """A job's URL from its URL, or from ``KIND/ID`` on this server.

        Raises
        ------
        VocloudError
            Raised if ``job`` is neither.
        """
        if job.startswith(("http://", "https://")):
            return job.rstrip("/")
        kind, _, job_id = job.strip("/").removeprefix("jobs/").partition("/")
        if not kind or not job_id or "/" in job_id:
            msg = f"{job!r} is not a job: give its URL or KIND/ID (e.g. sleep/abc123)"
            raise VocloudError(msg)
        return f"{self.job_list_url(kind)}/{quote(job_id, safe='')}"

    def submit(
        self,
        kind: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        files: Sequence[tuple[str, Path]] = (),
        run: bool = False,
    ) -> str:
        """Create a job of ``kind`` (uploading ``files`` as its file parameters); returns its URL.

        Raises
        ------
        VocloudError
            Raised if the server refuses the job (its message names the parameter).
        OSError
            Raised if a file cannot be read.
        """
        handles = [path.open("rb") for _, path in files]
        try:
            uploads: list[Upload] = [(name, (path.name, h)) for (name, path), h in zip(files, handles, strict=True)]
            return self.uws.create(self.job_list_url(kind), params, files=uploads, run=run)
        finally:
            for handle in handles:
                handle.close()

    # -- active-learning sessions -----------------------------------------------------------

    def session_url(self, session: str) -> str:
        """A session's URL from its URL or its id."""
        if session.startswith(("http://", "https://")):
            return session.rstrip("/")
        return f"{self.url}/sessions/{quote(session.strip('/'), safe='')}"

    def start_session(
        self,
        classes: Sequence[str],
        positive_class: str | None = None,
        *,
        labels: Sequence[LabelRecord] | Path = (),
        **settings: Any,
    ) -> dict[str, Any]:
        """Create a session and start its first iteration; returns the session document.

        Parameters
        ----------
        classes
            The class names (at least two).
        positive_class
            The class whose precision is estimated; default the first.
        labels
            Initial labels, uploaded with the session: records, or a file of
            them (CSV ``id,label[,labeller][,comment]``, JSON or VOTable; the
            server tells the format from the content).
        **settings
            Any other parameter ``POST /sessions`` takes, by its name:
            ``strategy``, ``batch_size``, ``seed_size``, ``precision_sample``,
            ``max_epochs``, ``label_budget``, ``auto_advance``, the selection
            (``pos``, ``size``, ``band``, ``collection``, ``targetname``) and
            the ``preprocess`` parameters. Booleans are sent as
            ``true``/``false``, sequences as repeated fields, None is left out.

        Raises
        ------
        VocloudError
            Raised if the server refuses the session (the message names the parameter).
        """
        form: list[tuple[str, str]] = [("class", ",".join(classes))]
        if positive_class is not None:
            form.append(("positive_class", positive_class))
        for name, value in settings.items():
            form.extend((name, text) for text in _form_values(value))
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None
        if isinstance(labels, Path):
            files = [("labels", (labels.name, labels.read_bytes(), "application/octet-stream"))]
        elif labels:
            from .labels import to_csv  # noqa: PLC0415 - the labels module is only needed when labels are sent

            files = [("labels", ("labels.csv", to_csv(labels), "text/csv"))]
        response = self.uws.request("POST", f"{self.url}/sessions", data=form, files=files, allow_redirects=False)
        location = response.headers.get("Location")
        if response.status_code not in (201, 303) or not location:
            msg = f"POST {self.url}/sessions answered {response.status_code} without the session's location"
            raise VocloudError(msg, status=response.status_code)
        return self.session(urljoin(f"{self.url}/sessions", location))

    def sessions(self) -> list[dict[str, Any]]:
        """Summaries of the caller's sessions, oldest first."""
        document = self._json("GET", "/sessions")
        return list(document.get("sessions", []))

    def session(self, session_id: str) -> dict[str, Any]:
        """The session document (``schemas/session.schema.json``): state, labels, iterations and their metrics.

        Raises
        ------
        VocloudError
            Raised if there is no such session (or it is someone else's: 404).
        """
        document: dict[str, Any] = self._json("GET", self.session_url(session_id))
        return document

    def delete_session(self, session_id: str) -> None:
        """Forget a session (its iteration jobs stay until their destruction time)."""
        self.uws.request("DELETE", self.session_url(session_id), allow_redirects=False)

    def start_iteration(self, session_id: str) -> dict[str, Any]:
        """Start the next iteration now (the server refuses with 409 while one runs); returns the session.

        Raises
        ------
        VocloudError
            Raised if the server refuses.
        """
        url = self.session_url(session_id)
        self.uws.request("POST", f"{url}/iterations", allow_redirects=False)
        return self.session(url)

    def wait_for_iteration(
        self, session_id: str, *, number: int | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Wait until an iteration has ended; returns its entry of the session document.

        The wait is on the iteration's UWS job with blocking ``WAIT``; the
        session is read again only while the iteration has not been created yet
        (e.g. just before auto-advance starts it), with a pause growing from
        0.5 s to 10 s.

        Parameters
        ----------
        session_id
            The session (id or URL).
        number
            The iteration; default the latest one.
        timeout
            Seconds to wait at most; None waits as long as it takes.

        Raises
        ------
        IterationFailedError
            Raised if the iteration failed (the message is the server's reason).
        ClientTimeoutError
            Raised if ``timeout`` passes first.
        VocloudError
            Raised if the session has no iteration yet and none is asked by number.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        url = self.session_url(session_id)
        pause = _FIRST_POLL_S
        waited: str | None = None
        while True:
            document = self.session(url)
            iterations = document["iterations"]
            if number is None and not iterations:
                msg = f"Session {document['id']} has no iteration yet"
                raise VocloudError(msg, url=url)
            wanted = iterations[-1]["number"] if number is None else number
            iteration = next((it for it in iterations if it["number"] == wanted), None)
            if iteration is not None and iteration["status"] not in PENDING_STATUSES:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                msg = f"Iteration {wanted} of session {document['id']} has not ended after {timeout:g} s"
                raise ClientTimeoutError(msg, url=url)
            if iteration is None or waited == iteration["job_url"]:
                # Not created yet, or its job ended and the session has not caught up: read it again later.
                time.sleep(pause if remaining is None else min(pause, remaining))
                pause = min(pause * 2, _MAX_POLL_S)
            else:
                waited = iteration["job_url"]
                self.uws.wait(waited, timeout=remaining)
        if iteration["status"] == "failed":
            msg = f"Iteration {wanted} of session {document['id']} failed: {iteration['error'] or 'no reason given'}"
            raise IterationFailedError(msg, url=iteration["job_url"])
        result: dict[str, Any] = iteration
        return result

    def latest_completed(self, session_id: str) -> dict[str, Any]:
        """The session's latest completed iteration.

        Raises
        ------
        VocloudError
            Raised if no iteration has completed yet.
        """
        document = self.session(session_id)
        done = [it for it in document["iterations"] if it["status"] == "completed"]
        if not done:
            state = document["state"]
            msg = f"Session {document['id']} has no completed iteration yet (it is {state}); wait for one first"
            raise VocloudError(msg, url=document["url"])
        latest: dict[str, Any] = done[-1]
        return latest

    def iteration_table(self, session_id: str, result: str, *, number: int | None = None) -> Table:
        """A VOTable result of an iteration (default: the latest completed) as an astropy Table.

        Parameters
        ----------
        session_id
            The session (id or URL).
        result
            ``candidates``, ``oracle``, ``precision_sample`` or ``learning_curve``.
        number
            The iteration; default the latest completed one.

        Raises
        ------
        VocloudError
            Raised if the iteration has not completed or has no such result.
        """
        if number is None:
            iteration = self.latest_completed(session_id)
        else:
            document = self.session(session_id)
            found: dict[str, Any] | None = next((it for it in document["iterations"] if it["number"] == number), None)
            if found is None or found["status"] != "completed":
                msg = f"Iteration {number} of session {document['id']} has not completed"
                raise VocloudError(msg, url=document["url"])
            iteration = found
        url = iteration["results"].get(result)
        if url is None:
            names = ", ".join(sorted(iteration["results"])) or "none"
            msg = f"Iteration {iteration['number']} has no {result!r} result (it has {names})"
            raise UWSError(msg, url=iteration["job_url"])
        return self.table(url)

    def oracle_batch(self, session_id: str, *, number: int | None = None) -> Table:
        """The spectra to label next: the latest completed iteration's ``oracle`` table."""
        return self.iteration_table(session_id, "oracle", number=number)

    def precision_sample(self, session_id: str, *, number: int | None = None) -> Table:
        """The random sample of predicted positives whose labels estimate precision (may be empty)."""
        return self.iteration_table(session_id, "precision_sample", number=number)

    def candidates(self, session_id: str, *, number: int | None = None) -> Table:
        """The latest completed iteration's candidates (predictions, uncertainties, DataLink to the spectra)."""
        return self.iteration_table(session_id, "candidates", number=number)

    def post_labels(self, session_id: str, records: Sequence[LabelRecord], *, key: str | None = None) -> dict[str, Any]:
        """Send labels (CSV); all or nothing. Returns the server's answer.

        The answer says how many were ``accepted``, how many spectra are
        ``labels``-led now, and the ``next_iteration`` job this post started
        (or None).

        Parameters
        ----------
        session_id
            The session (id or URL).
        records
            The labels.
        key
            An ``Idempotency-Key``: a repeat of the same post with the same key
            is not applied twice (a journal re-sending after a lost answer).

        Raises
        ------
        VocloudError
            Raised if the server refuses them (an unknown id or class: nothing is stored).
        """
        from .labels import to_csv  # noqa: PLC0415 - see start_session

        headers = {"Content-Type": "text/csv; charset=utf-8"}
        if key is not None:
            headers["Idempotency-Key"] = key
        body = to_csv(records)
        answer: dict[str, Any] = self._json(
            "POST", f"{self.session_url(session_id)}/labels", data=body, headers=headers
        )
        return answer

    def label_history(self, session_id: str) -> Table:
        """Every label posted to the session (who, when, in which iteration), oldest first."""
        return self.table(f"{self.session_url(session_id)}/labels")


def _form_values(value: Any) -> list[str]:
    """Form field texts of one setting: booleans as ``true``/``false``, sequences repeated, None left out."""
    match value:
        case None:
            return []
        case bool():
            return ["true" if value else "false"]
        case str():
            return [value]
        case int() | float():
            return [repr(value) if isinstance(value, float) else str(value)]
        case Sequence():
            return [text for item in value for text in _form_values(item)]
        case _:
            return [str(value)]
