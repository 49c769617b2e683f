"""Refs are small, versioned and survive a JSON round trip the way orchestrators store them."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from mlsteps.refs import (
    BaseRef,
    DatasetRef,
    DeploymentRef,
    ModelRef,
    ModelVersionRef,
    ReportRef,
    dump_ref,
    parse_ref,
)

SAMPLES: list[BaseRef] = [
    DatasetRef(uri="/data/x.parquet", content_hash="sha256:ab", rows=3, columns={"a": "int64"}),
    ModelRef(
        uri="models:/m-123", run_id="r", model_id="m-123", content_hash="sha256:cd", metadata={"task": "c"}
    ),
    ModelVersionRef(uri="models:/iris/2", name="iris", version="2", aliases=["champion"], source_run_id="r"),
    ReportRef(uri="/r/eval.json", passed=False, summary={"failed": ["accuracy"]}, html_uri="/r/eval.html"),
    DeploymentRef(
        uri="local://iris",
        target="local",
        endpoint="http://127.0.0.1:5001",
        model_uri="models:/iris/2",
        traffic={"2": 100},
        status="healthy",
    ),
]


@pytest.mark.parametrize("ref", SAMPLES, ids=lambda r: r.kind)  # type: ignore[attr-defined]
def test_json_round_trip(ref: BaseRef) -> None:
    text = json.dumps(dump_ref(ref))
    back = parse_ref(json.loads(text))
    assert back == ref
    assert type(back) is type(ref)
    assert parse_ref(text) == ref
    assert len(text) < 600  # a ref is a few hundred bytes, never data


@pytest.mark.parametrize("ref", SAMPLES, ids=lambda r: r.kind)  # type: ignore[attr-defined]
def test_every_ref_has_kind_and_schema_version(ref: BaseRef) -> None:
    data = dump_ref(ref)
    assert data["schema_version"] == 1
    assert data["kind"] in {"dataset", "model", "model_version", "report", "deployment"}


def test_fingerprint_prefers_content_hash() -> None:
    a = DatasetRef(uri="/a.parquet", content_hash="sha256:same")
    b = DatasetRef(uri="/elsewhere/b.parquet", content_hash="sha256:same")
    assert a.fingerprint() == b.fingerprint() == "sha256:same"
    c = ModelVersionRef(uri="models:/m/1", name="m", version="1")
    d = ModelVersionRef(uri="models:/m/2", name="m", version="2")
    assert c.fingerprint() != d.fingerprint()


def test_unknown_kind_and_unknown_field_are_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_ref({"kind": "dataframe", "uri": "x"})
    with pytest.raises(ValidationError):
        parse_ref({"kind": "dataset", "uri": "x", "rowz": 3})


def test_refs_are_immutable() -> None:
    ref = SAMPLES[0]
    with pytest.raises(ValidationError):
        ref.uri = "/other"  # type: ignore[misc]
