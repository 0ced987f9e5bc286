"""UWS 1.1 documents produced through vo-models (no XML is written by hand).

Documents are built with ``exclude_unset`` so that optional elements are
omitted rather than emitted empty: ``runId`` is optional but not nillable,
while ``ownerId`` is required and nillable (xsi:nil for anonymous jobs).
"""

from __future__ import annotations

from datetime import datetime

from pydantic_xml import BaseXmlModel, attr, element
from vo_models.uws.models import (
    NSMAP,
    ErrorSummary,
    Jobs,
    JobSummary,
    Parameter,
    ResultReference,
    Results,
    ShortJobDescription,
)
from vo_models.uws.types import ErrorType, UWSVersion

from ..kinds.spec import format_timestamp
from ..xmlout import to_xml_bytes
from .models import JobRecord

__all__ = ["JOBINFO_NS", "job_document", "job_list_document", "parameters_document", "results_document"]

JOBINFO_NS = "http://vocloud.dev/xml/jobinfo/v1"
"""Namespace of vocloud's elements inside ``uws:jobInfo``."""


class _ParameterList(BaseXmlModel, tag="parameters", ns="uws", nsmap=NSMAP):
    """A parameter list that keeps repeated and arbitrary parameter names.

    vo-models' ``Parameters`` needs one typed field per name; job kinds are
    plug-ins, so their names are only known at run time.
    """

    parameter: list[Parameter] = element(tag="parameter", default_factory=list)


class _Progress(BaseXmlModel, tag="progress", ns="vc", nsmap={"vc": JOBINFO_NS}):
    """Progress an executing job reported: a fraction in [0, 1] and a message."""

    fraction: float = attr()
    updated: str = attr()
    message: str = ""


class _JobInfo(BaseXmlModel, tag="jobInfo", ns="uws", nsmap=NSMAP):
    """``uws:jobInfo`` holds elements, not text (its schema type is a sequence of xs:any)."""

    progress: _Progress | None = element(default=None)


class _Job(JobSummary[_ParameterList], tag="job"):
    job_info: _JobInfo | None = element(tag="jobInfo", default=None)  # type: ignore[assignment]


def _parameters(job: JobRecord, job_url: str) -> _ParameterList:
    # UWS 1.1 section 2.2.3.1.1: an uploaded value is shown by reference, as the
    # URL of the stored copy under .../parameters/{name}.
    return _ParameterList(
        parameter=[
            Parameter(id=p.name, value=f"{job_url}/parameters/{p.value}", by_reference=True)
            if p.upload
            else Parameter(id=p.name, value=p.value)
            for p in job.parameters
        ]
    )


def _results(job: JobRecord, job_url: str) -> Results:
    return Results(
        results=[
            ResultReference(id=r.name, href=f"{job_url}/results/{r.name}", size=r.size, mime_type=r.mime_type)
            for r in job.results
        ]
    )


def _xml(model: BaseXmlModel) -> bytes:
    return to_xml_bytes(model, exclude_unset=True)


def job_document(job: JobRecord, *, job_url: str, quote: datetime | None) -> bytes:
    """The ``uws:job`` document of one job."""
    fields: dict[str, object] = {
        "job_id": job.job_id,
        "owner_id": job.owner,
        "phase": job.phase,
        "quote": quote,
        "creation_time": job.creation_time,
        "start_time": job.start_time,
        "end_time": job.end_time,
        "execution_duration": job.execution_duration,
        "destruction": job.destruction_time,
        "parameters": _parameters(job, job_url),
        "results": _results(job, job_url),
        "version": UWSVersion.V1_1,
    }
    if job.run_id is not None:
        fields["run_id"] = job.run_id
    if job.error is not None:
        fields["error_summary"] = ErrorSummary(
            message=job.error.message, type=ErrorType(job.error.type), has_detail=job.error.has_detail
        )
    if job.progress is not None:
        fields["job_info"] = _JobInfo(
            progress=_Progress(
                fraction=round(job.progress.fraction, 4),
                updated=format_timestamp(job.progress.updated),
                message=job.progress.message,
            )
        )
    return _xml(_Job(**fields))  # type: ignore[arg-type]


def job_list_document(jobs: list[JobRecord], *, list_url: str) -> bytes:
    """The ``uws:jobs`` document of a job list."""
    refs = []
    for job in jobs:
        fields: dict[str, object] = {
            "job_id": job.job_id,
            "href": f"{list_url}/{job.job_id}",
            "phase": job.phase,
            "owner_id": job.owner,
            "creation_time": job.creation_time,
        }
        if job.run_id is not None:
            fields["run_id"] = job.run_id
        refs.append(ShortJobDescription(**fields))  # type: ignore[arg-type]
    return _xml(Jobs(jobref=refs, version=UWSVersion.V1_1))


def parameters_document(job: JobRecord, *, job_url: str) -> bytes:
    """The ``uws:parameters`` document of a job."""
    return _xml(_parameters(job, job_url))


def results_document(job: JobRecord, *, job_url: str) -> bytes:
    """The ``uws:results`` document of a job."""
    return _xml(_results(job, job_url))
