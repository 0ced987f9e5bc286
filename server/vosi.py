"""VOSI 1.1 availability and capabilities documents (through vo-models)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, Union

from pydantic import AnyUrl
from pydantic_xml import create_model, element
from vo_models.voresource.models import AccessURL, Capability, Interface
from vo_models.vosi.availability.models import Availability
from vo_models.vosi.capabilities.models import VOSICapabilities

from .xmlout import to_xml_bytes

__all__ = ["availability_document", "capabilities_document", "uws_capabilities", "vosi_capabilities"]

VOSI_AVAILABILITY = "ivo://ivoa.net/std/VOSI#availability"
VOSI_CAPABILITIES = "ivo://ivoa.net/std/VOSI#capabilities"
UWS_REST_1_1 = "ivo://ivoa.net/std/UWS#rest-1.1"


def availability_document(*, up_since: datetime, note: str) -> bytes:
    """The VOSI availability document of a running service."""
    return to_xml_bytes(Availability(available=True, up_since=up_since.astimezone(UTC), note=[note]))


def _vosi_capability(standard_id: str, url: str) -> Capability:
    return Capability(
        standard_id=AnyUrl(standard_id),
        interface=[Interface(type="vs:ParamHTTP", access_url=[AccessURL(value=AnyUrl(url), use="full")])],
    )


def uws_capabilities(base: str, path: str) -> list[Capability]:
    """Capabilities of a UWS job service at ``base + path``, with its VOSI endpoints."""
    return [
        Capability(
            standard_id=AnyUrl(UWS_REST_1_1),
            interface=[
                Interface(type="vs:ParamHTTP", access_url=[AccessURL(value=AnyUrl(base + path), use="base")])
            ],
        ),
        *vosi_capabilities(base, path),
    ]


def capabilities_document(capabilities: list[Capability]) -> bytes:
    """A VOSI capabilities document listing ``capabilities``, protocol-specific subclasses (SSA's) included."""
    kinds = tuple(dict.fromkeys(type(capability) for capability in capabilities))
    return to_xml_bytes(_document_model(kinds)(capability=capabilities))


@functools.cache
def _document_model(kinds: tuple[type[Capability], ...]) -> type[VOSICapabilities]:
    """vo-models' document with a capability list that serialises exactly these classes.

    pydantic-xml writes a member of a union only when the value's class is the
    member itself, so vo-models' ``Union[TableAccess, Capability]`` silently
    drops any other subclass of ``Capability``.
    """
    member: Any = Union[kinds]  # noqa: UP007 - a union built at run time from a tuple of classes
    return create_model(
        "VOSICapabilities",
        __base__=VOSICapabilities,
        capability=(list[member], element(tag="capability", ns="", nsmap={"": ""}, default=[])),
    )


def vosi_capabilities(base: str, path: str) -> list[Capability]:
    """The two VOSI capabilities every service at ``base + path`` has."""
    return [
        _vosi_capability(VOSI_AVAILABILITY, f"{base}{path}/availability"),
        _vosi_capability(VOSI_CAPABILITIES, f"{base}{path}/capabilities"),
    ]
