"""The machine-readable description of every job kind, as JSON and as XML.

This is what VO-CLOUD's workers published as JSON/XSD; the formats are
defined by ``schemas/job-kinds.schema.json`` and ``schemas/job-kinds.xsd``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic_xml import BaseXmlModel, attr, element

from ..xmlout import to_xml_bytes
from .spec import JobKind

__all__ = ["KINDS_NS", "kinds_json", "kinds_xml"]

KINDS_NS = "http://vocloud.dev/xml/job-kinds/v1"
"""Namespace of the XML description (``schemas/job-kinds.xsd``)."""

_NSMAP = {"": KINDS_NS}


class _Parameter(BaseXmlModel, tag="parameter", nsmap=_NSMAP):
    name: str = attr()
    type: str = attr()
    required: bool = attr()
    multiple: bool = attr()
    unit: str | None = attr(default=None)
    default: str | None = attr(default=None)
    minimum: float | None = attr(default=None)
    maximum: float | None = attr(default=None)
    description: str = element()
    choice: list[str] = element(default_factory=list)


class _Result(BaseXmlModel, tag="result", nsmap=_NSMAP):
    name: str = attr()
    mime_type: str = attr(name="mimeType")
    description: str = element()


class _Kind(BaseXmlModel, tag="kind", nsmap=_NSMAP):
    name: str = attr()
    url: str = attr()
    title: str = element()
    description: str = element()
    parameter: list[_Parameter] = element(default_factory=list)
    result: list[_Result] = element(default_factory=list)


class _Kinds(BaseXmlModel, tag="kinds", nsmap=_NSMAP):
    kind: list[_Kind] = element(default_factory=list)


def kinds_json(kinds: Iterable[JobKind], *, base: str) -> dict[str, Any]:
    """The JSON description: ``{"kinds": [...]}`` with each kind's job-list URL."""
    return {"kinds": [{**kind.describe(), "url": f"{base}/jobs/{kind.name}"} for kind in kinds]}


def kinds_xml(kinds: Iterable[JobKind], *, base: str) -> bytes:
    """The XML description, same content as :func:`kinds_json`."""
    document = _Kinds(
        kind=[
            _Kind(
                name=described["name"],
                url=described["url"],
                title=described["title"],
                description=described["description"],
                parameter=[
                    _Parameter(**{k: v for k, v in p.items() if k != "choices"}, choice=p.get("choices", []))
                    for p in described["parameters"]
                ],
                result=[_Result(**r) for r in described["results"]],
            )
            for described in kinds_json(kinds, base=base)["kinds"]
        ]
    )
    return to_xml_bytes(document)
