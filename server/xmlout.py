"""Serialising pydantic-xml (vo-models) documents: one call, one set of options."""

from __future__ import annotations

from pydantic_xml import BaseXmlModel

__all__ = ["to_xml_bytes"]


def to_xml_bytes(model: BaseXmlModel, *, exclude_unset: bool = False) -> bytes:
    """UTF-8 bytes with an XML declaration.

    Parameters
    ----------
    model
        The document.
    exclude_unset
        Omit fields that were not given explicitly. UWS documents need this
        rather than ``skip_empty``: ``skip_empty`` would also drop the nil
        ``ownerId`` that the schema requires.
    """
    if exclude_unset:
        body = model.to_xml(encoding="UTF-8", xml_declaration=True, exclude_unset=True)
    else:
        body = model.to_xml(encoding="UTF-8", xml_declaration=True, skip_empty=True)
    if isinstance(body, str):  # pydantic-xml returns bytes when an encoding is given
        return body.encode()
    return body
