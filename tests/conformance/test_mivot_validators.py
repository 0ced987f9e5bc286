"""STILTS on MIVOT-annotated VOTables and on the vcml VO-DML model.

Deselected by default (``-m conformance`` selects it). A machine without STILTS
or the VOTable 1.4 schema of python3-gavo fails here rather than skipping: both
come from ``conformance/install-validators``, and a silent skip would hide a
broken install.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.server.ml.test_mivot import CLASSES, MODEL, VODML_SCHEMA, candidate_fields, candidate_rows, label_fields
from vocloud.server.ml.mivot import candidates_mapping, labels_mapping
from vocloud.server.votable import ResultDocument

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(120)]

VOTABLE_SCHEMA = Path("/usr/lib/python3/dist-packages/gavo/resources/schemata/VOTable.xsd")
"""The VOTable 1.4 schema (namespace v1.3), which STILTS does not carry; installed with python3-gavo."""
VOTABLE_NAMESPACE = "http://www.ivoa.net/xml/VOTable/v1.3"
VODML_NAMESPACE = "http://www.ivoa.net/xml/VODML/v1"

FOREIGN_MIVOT = "Element VODML in foreign namespace (http://www.ivoa.net/xml/mivot)"
"""The one warning votlint gives an annotated document: it knows VOTable up to 1.4, which admits MIVOT only
as an element of another namespace (``xs:any namespace="##other"`` in RESOURCE)."""


def stilts(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("stilts")
    assert command, "stilts is not on PATH: run conformance/install-validators"
    return subprocess.run(
        [command, *arguments], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=100, check=False
    )


def findings(result: subprocess.CompletedProcess[str], level: str) -> list[str]:
    return [line for line in f"{result.stdout}\n{result.stderr}".splitlines() if line.startswith(level)]


def candidates_document() -> bytes:
    document = ResultDocument(
        fields=candidate_fields(CLASSES),
        mivot=candidates_mapping(
            CLASSES,
            iteration=2,
            session_id="s-1",
            mc_samples=20,
            model_url="http://127.0.0.1:8080/vodml/vocloud-ml.vo-dml.xml",
        ),
    )
    return document.write(candidate_rows(CLASSES, 25), rows=25)


def labels_document() -> bytes:
    fields = label_fields()
    values = {
        "seq": [1, 2], "id": ["ivo://t/a", "ivo://t/b"], "label": ["emission", "absorption"],
        "labeller": ["Petr", None], "comment": [None, "weak"], "owner": ["anonymous", "anonymous"],
        "posted": ["2025-11-22T10:00:00.000", "2025-11-22T10:05:00.000"], "iteration": [0, 1],
    }  # fmt: skip
    return ResultDocument(fields=fields, mivot=labels_mapping(session_id="s-1")).write(values, rows=2)


@pytest.mark.parametrize("make", [candidates_document, labels_document], ids=["candidates", "labels"])
def test_votlint_finds_no_error_in_annotated_documents(make: Callable[[], bytes], tmp_path: Path) -> None:
    path = tmp_path / "annotated.vot"
    path.write_bytes(make())
    result = stilts("votlint", f"votable={path}")
    assert result.returncode == 0, result.stderr
    assert findings(result, "ERROR") == []
    warnings = findings(result, "WARNING")
    assert len(warnings) == 1, warnings
    assert FOREIGN_MIVOT in warnings[0]


@pytest.mark.parametrize("make", [candidates_document, labels_document], ids=["candidates", "labels"])
def test_annotated_documents_are_valid_votable_1_4(make: Callable[[], bytes], tmp_path: Path) -> None:
    assert VOTABLE_SCHEMA.is_file(), f"{VOTABLE_SCHEMA} is missing: run conformance/install-validators"
    path = tmp_path / "annotated.vot"
    path.write_bytes(make())
    result = stilts("xsdvalidate", "uselocals=true", f"schemaloc={VOTABLE_NAMESPACE}={VOTABLE_SCHEMA}", f"doc={path}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert findings(result, "ERROR") == []


def test_xsdvalidate_accepts_the_model(tmp_path: Path) -> None:
    result = stilts("xsdvalidate", f"schemaloc={VODML_NAMESPACE}={VODML_SCHEMA}", f"doc={MODEL}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert findings(result, "ERROR") == []
    # The same call fails on a broken model, so the pass above means something.
    broken = tmp_path / "broken.vo-dml.xml"
    broken.write_text(MODEL.read_text().replace("<name>vcml</name>", "<name>vcml</name><name>again</name>", 1))
    failed = stilts("xsdvalidate", f"schemaloc={VODML_NAMESPACE}={VODML_SCHEMA}", f"doc={broken}")
    assert failed.returncode != 0
    assert findings(failed, "ERROR")
