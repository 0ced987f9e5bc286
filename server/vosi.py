"""VOSI 1.1 availability and capabilities documents (through vo-models)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic_xml import BaseXmlModel
from vo_models.voresource.models import AccessURL, Capability, Interface
from vo_models.vosi.availability.models import Availability
from vo_models.vosi.capabilities.models import VOSICapabilities

__all__ = ["availability_document", "capabilities_document", "uws_capabilities"]

VOSI_AVAILABILITY = "ivo://ivoa.net/std/VOSI#availability"
VOSI_CAPABILITIES = "ivo://ivoa.net/std/VOSI#capabilities"
UWS_REST_1_1 = "ivo://ivoa.net/std/UWS#rest-1.1"


def _xml(model: BaseXmlModel) -> bytes:
    return model.to_xml(encoding="UTF-8", xml_declaration=True, skip_empty=True)  # type: ignore[no-any-return]


def availability_document(*, up_since: datetime, note: str) -> bytes:
    """The VOSI availability document of a running service."""
    return _xml(Availability(available=True, up_since=up_since.astimezone(UTC), note=[note]))


def _vosi_capability(standard_id: str, url: str) -> Capability:
    return Capability(
        standard_id=standard_id,
        interface=[Interface(type="vs:ParamHTTP", access_url=[AccessURL(value=url, use="full")])],
    )


def uws_capabilities(base: str, path: str) -> list[Capability]:
    """Capabilities of a UWS job service at ``base + path``, with its VOSI endpoints."""
    return [
        Capability(
            standard_id=UWS_REST_1_1,
            interface=[Interface(type="vs:ParamHTTP", access_url=[AccessURL(value=base + path, use="base")])],
        ),
        _vosi_capability(VOSI_AVAILABILITY, f"{base}{path}/availability"),
        _vosi_capability(VOSI_CAPABILITIES, f"{base}{path}/capabilities"),
    ]


def capabilities_document(capabilities: list[Capability]) -> bytes:
    """A VOSI capabilities document listing ``capabilities``."""
    return _xml(VOSICapabilities(capability=capabilities))
