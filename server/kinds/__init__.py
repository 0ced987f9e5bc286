"""Job kinds: the plug-in interface through which every kind of ML work reaches the UWS engine.

A plug-in defines a :class:`JobKind` and registers it, either through the
``vocloud.kinds`` entry-point group of its distribution or through the server
setting ``kinds`` (``VOCLOUD_KINDS``). Nothing here imports the web server, so
job code can be imported by worker processes on their own.
"""

from .context import JobContext, JobTransientError, JobUsageError, ServerPaths
from .spec import JobKind, ParameterValueError, ParamSpec, ParamType, ResultSpec

__all__ = [
    "JobContext",
    "JobKind",
    "JobTransientError",
    "JobUsageError",
    "ParamSpec",
    "ParamType",
    "ParameterValueError",
    "ResultSpec",
    "ServerPaths",
]
