"""Small job kinds used by the tests, the conformance runner and the benchmarks.

They exercise the engine (timing, failures, crashes, progress, uploads) without
any science; the real kinds arrive with their own issues.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from vocloud.server.kinds import JobContext, JobKind, JobTransientError, JobUsageError, ParamSpec, ParamType, ResultSpec

_VOTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
 <RESOURCE type="results">
  <INFO name="QUERY_STATUS" value="OK"/>
  <TABLE name="echo">
   <FIELD name="name" datatype="char" arraysize="*"/>
   <FIELD name="value" datatype="char" arraysize="*"/>
   <DATA><TABLEDATA>
{rows}
   </TABLEDATA></DATA>
  </TABLE>
 </RESOURCE>
</VOTABLE>
"""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def run_sleep(params: dict[str, Any], context: JobContext) -> None:
    """Sleep, reporting progress, then write a VOTable echoing the parameters."""
    seconds = float(params["seconds"])
    steps = max(1, int(seconds / 0.05))
    if params.get("partial"):
        context.result_path("partial").write_text("written before the end\n")
    for i in range(steps):
        time.sleep(seconds / steps)
        context.progress((i + 1) / steps, f"step {i + 1} of {steps}")
    rows = "\n".join(
        f"    <TR><TD>{_escape(k)}</TD><TD>{_escape(str(v))}</TD></TR>" for k, v in sorted(params.items())
    )
    context.result_path("result").write_text(_VOTABLE.format(rows=rows), encoding="utf-8")


def run_fail(params: dict[str, Any], context: JobContext) -> None:
    """Fail in the way asked for."""
    match params["how"]:
        case "usage":
            raise JobUsageError("The spectra selection is empty; widen the constraints")
        case "transient":
            raise JobTransientError("The remote archive did not answer; try again later")
        case "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        case _:
            raise ZeroDivisionError("division by zero in the model")


def run_upload(params: dict[str, Any], context: JobContext) -> None:
    """Count the lines of an uploaded file (and of any further files, one count per line)."""
    paths: list[Path] = [params["table"], *params.get("more", [])]
    counts = [path.read_text(encoding="utf-8", errors="replace").count("\n") for path in paths]
    context.result_path("result").write_text("".join(f"{n}\n" for n in counts))


SLEEP = JobKind(
    name="sleep",
    title="Sleep for a while (engine test)",
    description="Sleeps for the given time while reporting progress, then echoes its parameters as a VOTable.",
    runner="tests.support.kinds:run_sleep",
    parameters=(
        ParamSpec(name="seconds", type=ParamType.REAL, description="How long to sleep", unit="s",
                  default=0.0, minimum=0.0, maximum=3600.0),
        ParamSpec(name="label", type=ParamType.STRING, description="Free text echoed back", max_length=100),
        ParamSpec(name="band", type=ParamType.REAL, description="Repeatable wavelength", unit="m",
                  multiple=True),
        ParamSpec(name="partial", type=ParamType.BOOLEAN, description="Write a partial result first",
                  default=False),
        ParamSpec(name="after", type=ParamType.TIMESTAMP, description="A time, to test timestamps"),
        ParamSpec(name="colour", type=ParamType.STRING, description="A restricted choice",
                  choices=("red", "blue")),
        ParamSpec(name="count", type=ParamType.INTEGER, description="A bounded integer", minimum=1, maximum=10),
    ),
    results=(
        ResultSpec(name="result", mime_type="application/x-votable+xml", description="The echoed parameters"),
        ResultSpec(name="partial", mime_type="text/plain", description="Written first when asked"),
    ),
)

FAIL = JobKind(
    name="fail",
    title="Fail on purpose (engine test)",
    description="Fails as a usage error, a transient error, an unexpected exception, or by killing its worker.",
    runner="tests.support.kinds:run_fail",
    parameters=(
        ParamSpec(name="how", type=ParamType.STRING, description="How to fail", required=True,
                  choices=("usage", "transient", "crash", "bug")),
    ),
)

UPLOAD = JobKind(
    name="upload",
    title="Count lines of an upload (engine test)",
    description="Counts the lines of the uploaded file.",
    runner="tests.support.kinds:run_upload",
    parameters=(
        ParamSpec(name="table", type=ParamType.FILE, description="Any text file", required=True),
        ParamSpec(name="more", type=ParamType.FILE, description="Further text files", multiple=True),
    ),
    results=(ResultSpec(name="result", mime_type="text/plain", description="The number of lines"),),
)

ALL = (SLEEP, FAIL, UPLOAD)
"""Every test kind, for ``VOCLOUD_KINDS=tests.support.kinds:ALL``."""
