"""The SSA capability of VOSI capabilities (SimpleDALRegExt 1.2 with the SSA 1.1 schema), as pydantic-xml models.

vo-models has no SSA capability; these models follow the ``ssa:SimpleSpectralAccess``
type of the schema ``http://www.ivoa.net/xml/SSA/v1.1`` (the one DaCHS ships),
without its optional ``productType`` (not in every published version of the
schema) or the elements for services that extract or cut spectra.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AnyUrl
from pydantic_xml import BaseXmlModel, attr, element
from vo_models.vodataservice.models import ParamHTTP
from vo_models.voresource.models import AccessURL, Capability

__all__ = ["SSA_NS", "SSA_STANDARD_ID", "PosParam", "SSAQuery", "SimpleSpectralAccess", "ssa_capability"]

SSA_NS = "http://www.ivoa.net/xml/SSA/v1.1"
"""Namespace of the SSA capability schema."""

SSA_STANDARD_ID = "ivo://ivoa.net/std/SSA"
"""standardID of SSA (SimpleDALRegExt 1.2 section 2.3)."""

_XSI = "http://www.w3.org/2001/XMLSchema-instance"

ComplianceLevel = Literal["query", "minimal", "full"]
DataSource = Literal["survey", "pointed", "custom", "theory", "artificial"]
CreationType = Literal[
    "archival", "cutout", "filtered", "mosaic", "projection", "spectralExtraction", "catalogExtraction"
]


class PosParam(BaseXmlModel, tag="pos", ns="", nsmap={"": ""}):
    """A sky position of a test query, decimal degrees."""

    long: float = element(tag="long")
    lat: float = element(tag="lat")
    refframe: str | None = element(tag="refframe", default=None)


class SSAQuery(BaseXmlModel, tag="testQuery", ns="", nsmap={"": ""}):
    """A query expected to match at least one record (``ssa:Query``)."""

    pos: PosParam | None = element(tag="pos", default=None)
    size: float | None = element(tag="size", default=None)
    query_data_cmd: str | None = element(tag="queryDataCmd", default=None)


class SimpleSpectralAccess(Capability, tag="capability", nsmap={"": "", "ssa": SSA_NS, "xsi": _XSI}):
    """The capabilities of an SSA service (``ssa:SimpleSpectralAccess``)."""

    standard_id: AnyUrl | None = attr(name="standardID", default=AnyUrl(SSA_STANDARD_ID))
    type: str | None = attr(name="type", default="ssa:SimpleSpectralAccess", ns="xsi")
    # pydantic-xml writes the fields of the declared class only, so the subclass
    # must be named for queryType and resultType to be written.
    interface: list[ParamHTTP] | None = element(tag="interface", default_factory=list)  # type: ignore[assignment]

    compliance_level: ComplianceLevel = element(tag="complianceLevel")
    data_source: list[DataSource] = element(tag="dataSource")
    creation_type: list[CreationType] = element(tag="creationType")
    supported_frame: list[str] = element(tag="supportedFrame")
    max_search_radius: float | None = element(tag="maxSearchRadius", default=None)
    max_records: int | None = element(tag="maxRecords", default=None)
    default_max_records: int | None = element(tag="defaultMaxRecords", default=None)
    test_query: SSAQuery | None = element(tag="testQuery", default=None)


def ssa_capability(url: str, *, max_records: int, default_max_records: int) -> SimpleSpectralAccess:
    """The capability of the SSA service whose queryData base URL is ``url``.

    The service serves archived native files, not Spectrum DM serialisations,
    so it is query-compliant (SSA 1.1 section 1.4.1). Its test query asks for
    one record of anything, the only query that matches whenever the archive
    holds a spectrum.
    """
    return SimpleSpectralAccess(
        interface=[
            ParamHTTP(
                role="std",
                access_url=[AccessURL(value=AnyUrl(url), use="base")],
                query_type=["GET", "POST"],
                result_type="application/x-votable+xml",
            )
        ],
        compliance_level="query",
        data_source=["pointed"],
        creation_type=["archival"],
        supported_frame=["ICRS"],
        max_records=max_records,
        default_max_records=default_max_records,
        test_query=SSAQuery(query_data_cmd="MAXREC=1"),
    )
