"""Parameter declarations parse and check values, and refuse bad declarations."""

from datetime import UTC, datetime

import pytest

from vocloud.server.kinds import JobKind, ParameterValueError, ParamSpec, ParamType
from vocloud.server.kinds.spec import format_timestamp, format_value


def spec(**kwargs):
    return ParamSpec(name=kwargs.pop("name", "p"), description="d", **kwargs)


@pytest.mark.parametrize(
    ("ptype", "text", "expected"),
    [
        (ParamType.INTEGER, " 42 ", 42),
        (ParamType.REAL, "6.5e-7", 6.5e-7),
        (ParamType.BOOLEAN, "TRUE", True),
        (ParamType.BOOLEAN, "no", False),
        (ParamType.STRING, "  padded ", "padded"),
        (ParamType.TIMESTAMP, "2026-11-22T10:00:00Z", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        (ParamType.TIMESTAMP, "2026-11-22T11:00:00+01:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        (ParamType.TIMESTAMP, "2026-11-22", datetime(2026, 11, 22, tzinfo=UTC)),
    ],
)
def test_values_parse_to_their_types(ptype, text, expected):
    assert spec(type=ptype).parse(text) == expected


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"type": ParamType.INTEGER}, "4.5"),
        ({"type": ParamType.REAL}, "inf"),
        ({"type": ParamType.REAL, "minimum": 0.0}, "-0.1"),
        ({"type": ParamType.INTEGER, "maximum": 3}, "4"),
        ({"type": ParamType.STRING, "choices": ("a",)}, "b"),
        ({"type": ParamType.STRING, "max_length": 3}, "abcd"),
        ({"type": ParamType.BOOLEAN}, "2"),
        ({"type": ParamType.TIMESTAMP}, "22/11/2026"),
        ({"type": ParamType.FILE}, "path/to/file"),
    ],
)
def test_invalid_values_name_the_parameter(kwargs, text):
    with pytest.raises(ParameterValueError) as info:
        spec(name="threshold", **kwargs).parse(text)
    assert info.value.name == "threshold"
    assert "threshold" in str(info.value)


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="snake_case"):
        spec(name="Bad-Name", type=ParamType.STRING)
    with pytest.raises(ValueError, match="required and defaulted"):
        spec(type=ParamType.INTEGER, required=True, default=1)
    with pytest.raises(ValueError, match="module:function"):
        JobKind(name="k", title="t", description="d", runner="no_colon")
    with pytest.raises(ValueError, match="twice"):
        JobKind(name="k", title="t", description="d", runner="m:f",
                parameters=(spec(type=ParamType.STRING), spec(type=ParamType.INTEGER)))


def test_kind_defaults_and_missing():
    kind = JobKind(
        name="k", title="t", description="d", runner="m:f",
        parameters=(spec(name="a", type=ParamType.INTEGER, default=3),
                    spec(name="b", type=ParamType.STRING, required=True)),
    )
    assert kind.missing({"a"}) == ["b"]
    assert kind.missing({"b"}) == []
    assert kind.with_defaults({"b": "x"}) == {"a": 3, "b": "x"}
    assert kind.with_defaults({"a": 5}) == {"a": 5}
    assert kind.parameter("A") is kind.parameters[0]


def test_formatting_follows_uws_time_rules():
    value = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert format_timestamp(value) == "2026-01-02T03:04:05.678Z"
    assert format_value(True) == "true"
    assert format_value(value) == "2026-01-02T03:04:05.678Z"
