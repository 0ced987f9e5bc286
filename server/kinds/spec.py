"""Declarations of job kinds: typed parameters, named results and the code to run.

This module is imported by worker processes as well as by the web server, so it
imports nothing of aiohttp or of the UWS layer. A job kind is plain data plus a
dotted reference to a function; both pickle, so any executor (the local process
pool today, a distributed engine later) can ship them.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "JobKind",
    "ParamSpec",
    "ParamType",
    "ParameterValueError",
    "ResultSpec",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ParameterValueError(ValueError):
    """A parameter value does not satisfy its declaration.

    Parameters
    ----------
    name
        The parameter's declared name, so the HTTP layer can name it in a 400.
    message
        What is wrong, in words a user can act on.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"Parameter {name}: {message}")
        self.name = name


class ParamType(enum.StrEnum):
    """Value types a job parameter may declare (their VOTable/DALI counterparts)."""

    INTEGER = "integer"
    """A whole number (VOTable ``long``)."""
    REAL = "real"
    """A floating-point number (VOTable ``double``); NaN and infinities are refused."""
    BOOLEAN = "boolean"
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``), case-insensitive."""
    STRING = "string"
    """Free text, possibly restricted to ``choices``."""
    TIMESTAMP = "timestamp"
    """An ISO 8601 instant; naive values are taken as UTC (DALI timestamp)."""
    FILE = "file"
    """An uploaded file; the value is the server-side name of the stored upload."""


_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """One typed, documented parameter of a job kind.

    Parameters
    ----------
    name
        Lower-case identifier; matching in requests is case-insensitive.
    type
        The value type; values are parsed and checked when they are given.
    description
        What the parameter does, shown in the kind description.
    unit
        Physical unit in VOUnits, if any.
    default
        Value used when the parameter is not given (already typed).
    required
        Whether a job may not run without it; a job may still be created and
        stay PENDING until it is given.
    minimum, maximum
        Inclusive bounds for numeric parameters.
    choices
        Allowed values for string parameters.
    multiple
        Whether the parameter may be repeated; its value is then a list.
    max_length
        Longest accepted string value, to bound what a request can store.
    """

    name: str
    type: ParamType
    description: str
    unit: str | None = None
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    multiple: bool = False
    max_length: int = 4096

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            msg = f"Parameter name {self.name!r} must be lower-case snake_case"
            raise ValueError(msg)
        if self.required and self.default is not None:
            msg = f"Parameter {self.name} cannot be both required and defaulted"
            raise ValueError(msg)

    def parse(self, text: str) -> Any:  # noqa: PLR0912 - one branch per declared type
        """Convert one textual value from a request into its typed value.

        Raises
        ------
        ParameterValueError
            Raised if the text is not a valid value of this parameter.
        """
        text = text.strip()
        match self.type:
            case ParamType.INTEGER:
                try:
                    value: Any = int(text)
                except ValueError:
                    raise ParameterValueError(self.name, f"{text!r} is not an integer") from None
                self._check_range(value)
            case ParamType.REAL:
                try:
                    value = float(text)
                except ValueError:
                    raise ParameterValueError(self.name, f"{text!r} is not a number") from None
                if not math.isfinite(value):
                    raise ParameterValueError(self.name, "must be a finite number")
                self._check_range(value)
            case ParamType.BOOLEAN:
                lowered = text.lower()
                if lowered in _TRUE:
                    value = True
                elif lowered in _FALSE:
                    value = False
                else:
                    raise ParameterValueError(self.name, f"{text!r} is not true or false")
            case ParamType.STRING:
                if len(text) > self.max_length:
                    raise ParameterValueError(self.name, f"longer than {self.max_length} characters")
                if self.choices is not None and text not in self.choices:
                    allowed = ", ".join(self.choices)
                    raise ParameterValueError(self.name, f"{text!r} is not one of {allowed}")
                value = text
            case ParamType.TIMESTAMP:
                value = parse_timestamp(text, name=self.name)
            case ParamType.FILE:
                raise ParameterValueError(self.name, "must be uploaded as a file, not given as text")
            case _:  # pragma: no cover - the enum is closed
                msg = f"Unhandled parameter type {self.type}"
                raise AssertionError(msg)
        return value

    def _check_range(self, value: float) -> None:
        if self.minimum is not None and value < self.minimum:
            raise ParameterValueError(self.name, f"{value} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ParameterValueError(self.name, f"{value} is above the maximum {self.maximum}")

    def describe(self) -> dict[str, Any]:
        """Machine-readable description (the JSON form of ``schemas/job-kinds``)."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": str(self.type),
            "description": self.description,
            "required": self.required,
            "multiple": self.multiple,
        }
        if self.unit is not None:
            out["unit"] = self.unit
        if self.default is not None:
            out["default"] = format_value(self.default)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True, kw_only=True)
class ResultSpec:
    """One named result a job kind produces.

    Parameters
    ----------
    name
        The UWS result identifier, also the file name under the job's results.
    mime_type
        Media type the result is served with.
    description
        What the result holds.
    """

    name: str
    mime_type: str
    description: str

    def describe(self) -> dict[str, str]:
        """Machine-readable description."""
        return {"name": self.name, "mime_type": self.mime_type, "description": self.description}


@dataclass(frozen=True, kw_only=True)
class JobKind:
    """A kind of asynchronous job: its parameters, results and the function that runs it.

    Parameters
    ----------
    name
        The job list's path segment (``/jobs/{name}``).
    title
        One-line human title.
    description
        What the job does and when to use it.
    runner
        ``"package.module:function"``; the function is called in a worker
        process as ``function(params, context)`` and writes its results through
        the context. A string (not the function) keeps the kind picklable and
        lets the worker import heavy code only where it runs.
    parameters
        The declared parameters, in display order.
    results
        The results the kind produces when it completes.
    """

    name: str
    title: str
    description: str
    runner: str
    parameters: tuple[ParamSpec, ...] = ()
    results: tuple[ResultSpec, ...] = ()
    _by_name: dict[str, ParamSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            msg = f"Job kind name {self.name!r} must be lower-case snake_case"
            raise ValueError(msg)
        if ":" not in self.runner:
            msg = f"Job kind {self.name}: runner must be 'module:function', got {self.runner!r}"
            raise ValueError(msg)
        by_name = {p.name: p for p in self.parameters}
        if len(by_name) != len(self.parameters):
            msg = f"Job kind {self.name} declares a parameter twice"
            raise ValueError(msg)
        object.__setattr__(self, "_by_name", by_name)

    def parameter(self, name: str) -> ParamSpec | None:
        """The declared parameter of that (case-insensitive) name, if any."""
        return self._by_name.get(name.lower())

    def result(self, name: str) -> ResultSpec | None:
        """The declared result of that name, if any."""
        return next((r for r in self.results if r.name == name), None)

    def missing(self, given: Collection[str]) -> list[str]:
        """Names of required parameters not among the ``given`` names."""
        return [p.name for p in self.parameters if p.required and p.name not in given]

    def with_defaults(self, values: dict[str, Any]) -> dict[str, Any]:
        """The values a runner receives: given values plus defaults."""
        out = {p.name: p.default for p in self.parameters if p.default is not None}
        out.update(values)
        return out

    def describe(self) -> dict[str, Any]:
        """Machine-readable description of the kind (see ``schemas/job-kinds.schema.json``)."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "parameters": [p.describe() for p in self.parameters],
            "results": [r.describe() for r in self.results],
        }


def parse_timestamp(text: str, *, name: str) -> datetime:
    """Parse an ISO 8601 instant (DALI/UWS form), naive values taken as UTC.

    Raises
    ------
    ParameterValueError
        Raised if the text is not an ISO 8601 date or date-time.
    """
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(candidate)
    except ValueError:
        msg = f"{text!r} is not an ISO 8601 date-time (e.g. 2026-01-31T12:00:00Z)"
        raise ParameterValueError(name, msg) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_value(value: Any) -> str:
    """Text form of a typed parameter value, as shown in UWS documents."""
    match value:
        case bool():
            return "true" if value else "false"
        case datetime():
            return format_timestamp(value)
        case _:
            return str(value)


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` and milliseconds, as UWS 1.1 section 2.2.1 asks."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
