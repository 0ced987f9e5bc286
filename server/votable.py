"""The one place vocloud reads and writes VOTables, including DALI error documents."""

from __future__ import annotations

import dataclasses
import io
import math
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io.votable import parse
from astropy.io.votable.tree import (
    CooSys,
    Field,
    Group,
    Info,
    MivotBlock,
    Param,
    Resource,
    TableElement,
    TimeSys,
    Values,
    VOTableFile,
)
from lxml import etree

__all__ = [
    "DATALINK_MIME",
    "DATALINK_STANDARD_ID",
    "VOTABLE_MIME",
    "CoordinateSystem",
    "FieldSpec",
    "ParamSpec",
    "ResultDocument",
    "ServiceDescriptor",
    "TimeSystem",
    "error_document",
    "parse_tolerant",
]

VOTABLE_MIME = "application/x-votable+xml"
"""Media type of VOTable documents (DALI 1.1 section 5.4)."""

VOTABLE_VERSION = "1.4"
"""Written version: the newest the Debian STILTS validators know."""

DATALINK_MIME = "application/x-votable+xml;content=datalink"
"""Media type of a DataLink ``{links}`` response (DataLink 1.1 section 3.1), sent exactly so."""

DATALINK_STANDARD_ID = "ivo://ivoa.net/std/DataLink#links-1.1"
"""standardID of the ``{links}`` capability, also named by an INFO in every ``{links}`` response (section 3.3.1)."""


def error_document(message: str) -> bytes:
    """A DALI 1.1 error VOTable (section 5.2): a results resource whose INFO QUERY_STATUS is ERROR.

    pyvo reads it from a job's ``error`` resource (``DALQueryError``); for HTTP
    error statuses it only shows the status line, which is why the middleware
    repeats the message as the reason phrase.
    """
    document = VOTableFile(version=VOTABLE_VERSION)
    resource = Resource(type="results")
    status = Info(name="QUERY_STATUS", value="ERROR")
    status.content = message
    resource.infos.append(status)
    document.resources.append(resource)
    buffer = io.BytesIO()
    document.to_xml(buffer)
    return buffer.getvalue()


_ARRAYSIZE_RE = re.compile(r"^(\d+x)*(\d+\*?|\*)$")


def parse_tolerant(data: bytes) -> VOTableFile:
    """Parse a VOTable from a real service, repairing what astropy refuses.

    Real services publish invalid ``arraysize`` values (the Ondřejov SSA
    service writes ``arraysize="m"`` on a PARAM); such attributes are replaced
    by ``*`` before astropy reads the document, and astropy's warnings about
    other deviations are not fatal.

    Raises
    ------
    ValueError
        Raised if the bytes are not a VOTable at all.
    """
    try:
        root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as e:
        msg = f"Not an XML document: {e}"
        raise ValueError(msg) from e
    for element in root.iter("{*}FIELD", "{*}PARAM"):
        size = element.get("arraysize")
        if size is not None and not _ARRAYSIZE_RE.match(size):
            element.set("arraysize", "*")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return parse(io.BytesIO(etree.tostring(root)), verify="ignore")
    except Exception as e:
        msg = f"Not a readable VOTable: {e}"
        raise ValueError(msg) from e


@dataclass(frozen=True, kw_only=True)
class FieldSpec:
    """How one column of a result table is declared (a FIELD; with a value, see :class:`ParamSpec`).

    Parameters
    ----------
    name
        Column name; also its XML ID unless ``id`` is given.
    datatype
        VOTable datatype (``char``, ``long``, ``double``, ...).
    arraysize
        VOTable arraysize (``*`` for strings, ``2`` for positions).
    unit, ucd, utype, xtype
        Standard VOTable annotations (units in VOUnit syntax).
    ref
        ID of a COOSYS or TIMESYS the values refer to, or of the FIELD an input
        PARAM takes its values from (DataLink 1.1 section 4.1).
    description
        Human-readable description.
    id
        XML ID, when it must differ from the name.
    """

    name: str
    datatype: str
    arraysize: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    xtype: str | None = None
    ref: str | None = None
    description: str | None = None
    id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ParamSpec(FieldSpec):
    """A PARAM: a FIELD with one value, optionally restricted by VALUES (options or a range)."""

    value: str = ""
    options: tuple[str, ...] = ()
    minimum: str | None = None
    maximum: str | None = None


@dataclass(frozen=True, kw_only=True)
class ServiceDescriptor:
    """A DataLink 1.1 service descriptor (section 4): ``RESOURCE type="meta" utype="adhoc:service"``.

    Parameters
    ----------
    standard_id
        The standardID of the described service (e.g. ``ivo://ivoa.net/std/DataLink#links-1.1``).
    access_url
        Where the service is called.
    input_params
        The ``inputParams`` GROUP; a PARAM whose ``ref`` names a result
        column takes its value from that column of the row at hand.
    id
        XML ID of the RESOURCE; it also prefixes the IDs of its PARAMs, which
        must be unique in the document.
    description
        What the service offers.
    """

    standard_id: str
    access_url: str
    input_params: tuple[ParamSpec, ...]
    id: str
    description: str | None = None


@dataclass(frozen=True, kw_only=True)
class TimeSystem:
    """A VOTable 1.4 TIMESYS (section 3.2): how the time columns referring to it are to be read."""

    id: str
    timeorigin: str
    timescale: str
    refposition: str


@dataclass(frozen=True, kw_only=True)
class CoordinateSystem:
    """A COOSYS: the celestial frame of the position columns referring to it."""

    id: str
    system: str


def _attributes(spec: FieldSpec) -> dict[str, str]:
    names = ("arraysize", "unit", "ucd", "utype", "xtype", "ref")
    values = {name: getattr(spec, name) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def _field(document: VOTableFile, spec: FieldSpec) -> Field:
    field = Field(document, ID=spec.id or spec.name, name=spec.name, datatype=spec.datatype, **_attributes(spec))
    field.description = spec.description
    return field


class _UnsetParam(Param):  # type: ignore[misc]  # astropy's tree classes are untyped
    """A PARAM written with ``value=""`` whatever its datatype.

    astropy writes an empty numeric array value as zeros (``0 0`` for a
    ``double[2]``), which would turn a parameter the user chooses, such as
    SODA's BAND, into a fixed one that clients must send as is (DataLink 1.1
    section 4.3).
    """

    def to_xml(self, w: Any, **kwargs: Any) -> None:
        state = self.__dict__
        kept = state["_value"]
        state["_value"] = ""
        try:
            Field.to_xml(self, w, **kwargs)
        finally:
            state["_value"] = kept


def _param(document: VOTableFile, spec: ParamSpec) -> Param:
    kind = _UnsetParam if spec.value == "" and spec.datatype not in _CHARS else Param
    param = kind(
        document, ID=spec.id or spec.name, name=spec.name, datatype=spec.datatype, value=spec.value,
        **_attributes(spec),
    )  # fmt: skip
    param.description = spec.description
    if spec.options or spec.minimum is not None or spec.maximum is not None:
        values = Values(document, param)
        for option in spec.options:
            values.options.append((option, option))
        if spec.minimum is not None:
            values.min = spec.minimum
        if spec.maximum is not None:
            values.max = spec.maximum
        param.values = values
    return param


def _info(name: str, value: str, content: str | None = None) -> Info:
    info = Info(name=name, value=value)
    info.content = content
    return info


class ResultDocument:
    """A DALI 1.1 results VOTable (section 4.4) whose metadata is written once and whose rows change per response.

    astropy writes everything but the rows, once per QUERY_STATUS and message,
    and validates the metadata on the way. It writes rows at a few thousand a
    second, calling Python for every cell, and spends milliseconds on the
    metadata of a wide table, so the rows are formatted here as TABLEDATA
    (VOTable 1.4 section 5.1) and spliced into the cached metadata: a small
    query costs a fraction of a millisecond to write, a thousand rows about
    as many milliseconds. Safe to call from several threads at once.

    Parameters
    ----------
    fields
        The columns of the result table, in order.
    params
        Constant columns of the table (PARAMs inside TABLE).
    resource_params
        PARAMs of the results RESOURCE (e.g. SSA's ``INPUT:`` parameters).
    infos
        (name, value, content) of INFOs following QUERY_STATUS in the results RESOURCE.
    descriptors
        Service descriptors appended as ``meta`` resources.
    coordinate_systems, time_systems
        COOSYS and TIMESYS elements the fields refer to.
    description
        DESCRIPTION of the document.
    mivot
        A MIVOT 1.0 mapping block (the ``VODML`` element as text, e.g. from
        `vocloud.server.ml.mivot`) annotating the table; it is written where
        MIVOT section 4 wants it, in a ``RESOURCE type="meta"`` inside the
        results RESOURCE, before the TABLE, which is also where pyvo's
        ``MivotViewer`` looks.

    Raises
    ------
    ValueError
        Raised if a field's datatype has no TABLEDATA form here (bit, complex
        types), a fixed-size array is not of floating-point numbers, or
        ``mivot`` is not a well-formed ``VODML`` element of the MIVOT namespace.
    """

    _FRAMES = 32
    """Most (QUERY_STATUS, message) pairs whose metadata is kept written."""

    def __init__(
        self,
        *,
        fields: Sequence[FieldSpec],
        params: Sequence[ParamSpec] = (),
        resource_params: Sequence[ParamSpec] = (),
        infos: Sequence[tuple[str, str, str | None]] = (),
        descriptors: Sequence[ServiceDescriptor] = (),
        coordinate_systems: Sequence[CoordinateSystem] = (),
        time_systems: Sequence[TimeSystem] = (),
        description: str | None = None,
        mivot: str | None = None,
    ) -> None:
        self.fields = tuple(fields)
        self._formatters = tuple(_formatter(spec) for spec in self.fields)
        self._document = _results_document(
            fields=self.fields,
            params=params,
            resource_params=resource_params,
            infos=infos,
            descriptors=descriptors,
            coordinate_systems=coordinate_systems,
            time_systems=time_systems,
            description=description,
            mivot=mivot,
        )
        self._lock = threading.Lock()
        self._frames: OrderedDict[tuple[str, str | None], tuple[bytes, bytes]] = OrderedDict()

    def write(
        self,
        columns: Mapping[str, Sequence[Any] | np.ndarray],
        *,
        rows: int,
        status: str = "OK",
        message: str | None = None,
    ) -> bytes:
        """Serialise the document with these rows.

        Parameters
        ----------
        columns
            Values of every field, by field name, each ``rows`` long (numpy
            arrays, masked or not, work too). ``None`` (or a masked value) is
            written as null: an empty cell (VOTable 1.4 section 6), or NaN
            elements for a fixed-size floating-point array, where an empty cell
            would be invalid. A floating-point NaN is written as NaN.
        rows
            Number of rows.
        status
            QUERY_STATUS: ``OK`` or ``OVERFLOW`` (DALI 1.1 section 4.4.1 allows the
            initial INFO to carry the overflow, which is where pyvo looks).
        message
            Content of the QUERY_STATUS INFO.

        Raises
        ------
        KeyError
            Raised if a field has no column.
        ValueError
            Raised if a column does not have ``rows`` values.
        """
        head, tail = self._frame(status, message)
        if not rows:
            return head + tail
        cells: list[list[str]] = []
        for spec, formatter in zip(self.fields, self._formatters, strict=True):
            values = _values(columns[spec.name])
            if len(values) != rows:
                msg = f"Column {spec.name} has {len(values)} values for {rows} rows"
                raise ValueError(msg)
            cells.append([formatter(value) for value in values])
        body = "".join(
            "<TR>" + "".join(f"<TD>{cell}</TD>" if cell else "<TD/>" for cell in row) + "</TR>\n"
            for row in zip(*cells, strict=True)
        )
        return b"".join((head, b"<DATA><TABLEDATA>\n", body.encode(), b"</TABLEDATA></DATA>\n", tail))

    def _frame(self, status: str, message: str | None) -> tuple[bytes, bytes]:
        """The document before and after the table's DATA, written by astropy (cached)."""
        key = (status, message)
        with self._lock:
            frame = self._frames.get(key)
            if frame is None:
                results = self._document.resources[0]
                results.infos[0].value = status
                results.infos[0].content = message
                buffer = io.BytesIO()
                self._document.to_xml(buffer)
                text = buffer.getvalue()
                # The results TABLE is the document's only one, and astropy writes
                # no DATA for an empty table: the rows go before its end tag.
                cut = text.index(b"</TABLE>")
                frame = (text[:cut], text[cut:])
                self._frames[key] = frame
                if len(self._frames) > self._FRAMES:
                    self._frames.popitem(last=False)
            else:
                self._frames.move_to_end(key)
            return frame


def _results_document(
    *,
    fields: Sequence[FieldSpec],
    params: Sequence[ParamSpec],
    resource_params: Sequence[ParamSpec],
    infos: Sequence[tuple[str, str, str | None]],
    descriptors: Sequence[ServiceDescriptor],
    coordinate_systems: Sequence[CoordinateSystem],
    time_systems: Sequence[TimeSystem],
    description: str | None,
    mivot: str | None = None,
) -> VOTableFile:
    document = VOTableFile(version=VOTABLE_VERSION)
    document.description = description
    results = Resource(type="results")
    results.infos.append(_info("QUERY_STATUS", "OK"))
    results.infos.extend(_info(name, value, content) for name, value, content in infos)
    config = document._config  # TIMESYS needs the document's version to know it is allowed
    results.coordinate_systems.extend(CooSys(ID=c.id, system=c.system, config=config) for c in coordinate_systems)
    results.time_systems.extend(
        TimeSys(ID=t.id, timeorigin=t.timeorigin, timescale=t.timescale, refposition=t.refposition, config=config)
        for t in time_systems
    )
    results.params.extend(_param(document, spec) for spec in resource_params)
    if mivot is not None:
        results.resources.append(_mivot_resource(mivot))
    table = TableElement(document, ID="results", name="results")
    table.fields.extend(_field(document, spec) for spec in fields)
    table.params.extend(_param(document, spec) for spec in params)
    table.create_arrays(0)
    results.tables.append(table)
    document.resources.append(results)
    for descriptor in descriptors:
        document.resources.append(_descriptor_resource(document, descriptor))
    return document


_MIVOT_ROOT = "{http://www.ivoa.net/xml/mivot}VODML"


def _mivot_resource(block: str) -> Resource:
    """The ``RESOURCE type="meta"`` carrying a MIVOT block (astropy writes it before the parent's TABLE)."""
    # astropy copies the block into the document verbatim, so a malformed one
    # would make every response unreadable: check it once, here.
    try:
        root = etree.fromstring(block.strip().encode(), parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as e:
        msg = f"The MIVOT block is not well-formed XML: {e}"
        raise ValueError(msg) from e
    if root.tag != _MIVOT_ROOT:
        msg = f"A MIVOT block is a VODML element of namespace http://www.ivoa.net/xml/mivot, not {root.tag}"
        raise ValueError(msg)
    meta = Resource(type="meta")
    meta.mivot_block = MivotBlock(block)
    return meta


_FLOATS = frozenset({"float", "double"})
_CHARS = frozenset({"char", "unicodeChar"})
_INTEGERS = frozenset({"unsignedByte", "short", "int", "long"})
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters XML 1.0 cannot carry, even escaped."""


def _values(column: Sequence[Any] | np.ndarray) -> Sequence[Any]:
    """A column as Python values, masked entries as ``None``."""
    if isinstance(column, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(column).tolist()
        return [None if masked else value for value, masked in zip(column.data.tolist(), mask, strict=True)]
    if isinstance(column, np.ndarray):
        return list(column.tolist())
    return column


def _text(value: Any) -> str:
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _NOT_XML.sub("\ufffd", text)


def _double(value: Any) -> str:
    number = float(value)
    if math.isfinite(number):
        return repr(number)
    if math.isnan(number):
        return "NaN"
    return "+Inf" if number > 0 else "-Inf"


def _single(value: Any) -> str:
    number = float(value)
    # Nine significant digits give back the same 32-bit float (IEEE 754).
    return format(number, ".9g") if math.isfinite(number) else _double(number)


def _formatter(spec: FieldSpec) -> Callable[[Any], str]:
    """How a cell of this field is written in TABLEDATA; ``""`` is an empty (null) cell."""
    if spec.datatype in _CHARS:
        return lambda value: "" if value is None else _text(value)
    if spec.arraysize is not None:
        if spec.datatype not in _FLOATS or not spec.arraysize.isdigit():
            msg = f"Field {spec.name}: arrays other than fixed-size float or double are not supported"
            raise ValueError(msg)
        number = _single if spec.datatype == "float" else _double
        nulls = " ".join(["NaN"] * int(spec.arraysize))
        return lambda value: nulls if value is None else " ".join(number(element) for element in value)
    if spec.datatype == "float":
        return lambda value: "" if value is None else _single(value)
    if spec.datatype == "double":
        return lambda value: "" if value is None else _double(value)
    if spec.datatype in _INTEGERS:
        return lambda value: "" if value is None else str(int(value))
    if spec.datatype == "boolean":
        return lambda value: "" if value is None else ("T" if value else "F")
    msg = f"Field {spec.name}: datatype {spec.datatype} is not supported"
    raise ValueError(msg)


def _descriptor_resource(document: VOTableFile, descriptor: ServiceDescriptor) -> Resource:
    prefix = descriptor.id
    resource = Resource(type="meta", utype="adhoc:service", ID=prefix)
    resource.description = descriptor.description
    resource.params.append(
        _param(document, ParamSpec(name="standardID", datatype="char", arraysize="*",
                                   value=descriptor.standard_id, id=f"{prefix}_standardID"))
    )  # fmt: skip
    resource.params.append(
        _param(document, ParamSpec(name="accessURL", datatype="char", arraysize="*", ucd="meta.ref.url",
                                   value=descriptor.access_url, id=f"{prefix}_accessURL"))
    )  # fmt: skip
    group = Group(resource, ID=f"{prefix}_inputParams", name="inputParams")
    group.entries.extend(
        _param(document, spec if spec.id else dataclasses.replace(spec, id=f"{prefix}_{spec.name}"))
        for spec in descriptor.input_params
    )
    resource.groups.append(group)
    return resource
