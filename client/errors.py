"""Errors of the vocloud client, and the exit codes of its commands.

Every command of the ``vocloud`` client ends with one of these exit codes, so
that scripts can tell a job that failed from a command they got wrong, a server
that is down, or a wait that ran out:

=====  =====================  ==================================================
code   constant               meaning
=====  =====================  ==================================================
0      `EXIT_OK`              done
1      `EXIT_JOB_FAILED`      a job ended in ERROR or ABORTED (or an iteration
                              failed); the service's errorSummary is printed
2      `EXIT_USAGE`           bad command line or input, or the server refused
                              the request (4xx/5xx with its own message)
3      `EXIT_UNREACHABLE`     no connection to the server (refused, DNS, TLS)
4      `EXIT_TIMEOUT`         the client-side time limit passed first
130    `EXIT_INTERRUPTED`     interrupted by Ctrl-C (128 + SIGINT, as shells
                              report it); labels given so far are journalled
=====  =====================  ==================================================

Each exception carries its exit code as ``exit_code``, so a command maps any
client error to its status with `exit_code_for` instead of a ladder of
``except`` clauses. The message of a refused request is the server's own: the
text of a DALI error VOTable's ``QUERY_STATUS``, a JSON ``message``/``error``,
or the start of a plain-text body (`server_message`).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import requests
from lxml import etree

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_JOB_FAILED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "AuthenticationError",
    "ClientTimeoutError",
    "ServerUnreachableError",
    "VocloudError",
    "check_response",
    "connection_reason",
    "exit_code_for",
    "send",
    "server_message",
]

EXIT_OK = 0
"""The command did what it was asked."""

EXIT_JOB_FAILED = 1
"""A job ended in ERROR or ABORTED, or an active-learning iteration failed."""

EXIT_USAGE = 2
"""Bad command line or input, or the server refused the request (argparse also exits with 2)."""

EXIT_UNREACHABLE = 3
"""The server could not be reached at all: nothing was done there."""

EXIT_TIMEOUT = 4
"""The client-side time limit passed before the job or iteration ended; it may still be running."""

EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT): a script sees the command did not finish, as it would for any interrupted program."""

_MAX_TEXT = 500
"""Characters of a plain-text error body kept in a message: enough for a sentence, never a whole page."""

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


class VocloudError(Exception):
    """A request to a vocloud (or any UWS/VO) service failed; the message is the service's own.

    Parameters
    ----------
    message
        What went wrong, in the service's words when it gave any.
    status
        The HTTP status of the refusal, or None when there was no answer.
    url
        The URL that failed, when known.
    """

    exit_code: ClassVar[int] = EXIT_USAGE
    """Exit status of a command ending with this error."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url


class AuthenticationError(VocloudError):
    """The server asks for credentials (401) that were not given, or refused the ones given."""


class ServerUnreachableError(VocloudError, ConnectionError):
    """No connection to the server: refused, name not resolved, TLS failure, or no answer to connect.

    Also a `ConnectionError`, so code written for the standard exceptions
    (``except OSError``) keeps working.
    """

    exit_code: ClassVar[int] = EXIT_UNREACHABLE


class ClientTimeoutError(VocloudError, TimeoutError):
    """The client's own time limit passed (a wait on a job, or a server slow to answer); also a `TimeoutError`."""

    exit_code: ClassVar[int] = EXIT_TIMEOUT


def exit_code_for(error: BaseException) -> int:
    """The command's exit status for an error that ended it.

    Client errors carry their own; a bare `TimeoutError` is a timeout, any
    other `OSError` a server (or file) that could not be reached, anything else
    a usage error.
    """
    code = getattr(error, "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(error, TimeoutError | requests.Timeout):
        return EXIT_TIMEOUT
    if isinstance(error, requests.ConnectionError):
        return EXIT_UNREACHABLE
    return EXIT_USAGE


def server_message(response: requests.Response) -> str:
    """The service's own explanation of a refused request.

    DALI services put it in the error VOTable's ``QUERY_STATUS`` INFO (its text
    or, failing that, its ``value``); JSON APIs in ``message``, ``error`` or
    ``detail``; anything else is taken as text, shortened.
    """
    body = response.content
    content_type = response.headers.get("Content-Type", "")
    if "json" in content_type:
        try:
            document: Any = json.loads(body)
        except ValueError:
            document = None
        if isinstance(document, dict):
            for key in ("message", "error", "detail"):
                if isinstance(document.get(key), str) and document[key].strip():
                    return str(document[key]).strip()
    if body.lstrip().startswith(b"<"):
        try:
            root = etree.fromstring(body, parser=_XML_PARSER)
        except etree.XMLSyntaxError:
            root = None
        if root is not None:
            info = root.find(".//{*}INFO[@name='QUERY_STATUS']")
            if info is not None and (info.text or "").strip():
                return str(info.text).strip()
            if root.tag.rsplit("}", 1)[-1].lower() == "html":
                title = str(root.findtext(".//{*}title") or root.findtext(".//{*}h1") or "").strip()
                if title:
                    return title
    text = response.text.strip()
    return text[:_MAX_TEXT] if text else (response.reason or f"HTTP {response.status_code}")


def check_response(response: requests.Response) -> requests.Response:
    """Return ``response`` if it succeeded, else raise its error carrying the server's message.

    The message is the server's own words only (so that a program can show or
    compare it); the status and URL travel as attributes.

    Raises
    ------
    AuthenticationError
        Raised if the server answered 401 (credentials missing or refused).
    VocloudError
        Raised if it answered any other 4xx or 5xx status.
    """
    if response.status_code < 400:
        return response
    message = server_message(response)
    if response.status_code == 401:
        raise AuthenticationError(message, status=401, url=response.url)
    raise VocloudError(message, status=response.status_code, url=response.url)


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """Send a request and return its response if it succeeded: the one place requests' failures are mapped.

    ``kwargs`` go to `requests.Session.request`; its ``timeout`` (seconds, or a
    (connect, read) pair) is named in the timeout message.

    Raises
    ------
    ServerUnreachableError
        Raised if no connection could be made (in time).
    ClientTimeoutError
        Raised if the server did not answer within the read timeout.
    VocloudError
        Raised if it refused the request (the message is its own), or the request failed otherwise.
    """
    try:
        response = session.request(method, url, **kwargs)
    except requests.ConnectionError as e:
        # ConnectTimeout is both; reaching nobody in time is still unreachable.
        msg = f"Cannot reach {url}: {connection_reason(e)}"
        raise ServerUnreachableError(msg, url=url) from e
    except requests.Timeout as e:
        timeout = kwargs.get("timeout")
        seconds = timeout[-1] if isinstance(timeout, tuple) else timeout
        msg = f"{url} did not answer within {seconds:g} s" if seconds is not None else f"{url} did not answer"
        raise ClientTimeoutError(msg, url=url) from e
    except requests.RequestException as e:
        msg = f"{method} {url} failed: {e}"
        raise VocloudError(msg, url=url) from e
    return check_response(response)


def connection_reason(error: BaseException) -> str:
    """The innermost cause of a connection failure (urllib3 wraps it in two or three layers)."""
    cause: BaseException = error
    for _ in range(10):  # a bound, in case a library ever builds a cycle
        inner = cause.__cause__ or next((a for a in cause.args if isinstance(a, BaseException)), None)
        if inner is None:
            break
        cause = inner
    text = str(cause)
    # urllib3's "<urllib3.connection.HTTPConnection object at 0x...>: Failed to ..." says nothing useful first.
    return text.split(">: ", 1)[-1] if ">: " in text else text
