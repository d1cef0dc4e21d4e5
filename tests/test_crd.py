"""The committed CRD is the one generated from the shared model (one place to change a field)."""

from __future__ import annotations

from pathlib import Path

import yaml

from syncjob import crd, names
from syncjob.model import SyncJobSpec, SyncJobStatus

CRD_FILE = Path(__file__).resolve().parents[1] / "crds" / "syncjobs.sync.tradingagents.io.yaml"


def test_committed_crd_matches_the_model() -> None:
    assert CRD_FILE.read_text() == crd.render(), "crds/ is stale: run `make crds`"


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    schema = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec, status = schema["properties"]["spec"], schema["properties"]["status"]
    assert set(spec["properties"]) == {f.alias for f in SyncJobSpec.model_fields.values()}
    assert set(status["properties"]) == {f.alias for f in SyncJobStatus.model_fields.values()}
    for name, prop in {**spec["properties"], **status["properties"]}.items():
        assert prop.get("description"), f"{name} has no description"


def test_crd_names_short_name_and_printer_columns() -> None:
    doc = yaml.safe_load(CRD_FILE.read_text())
    assert doc["metadata"]["name"] == names.CRD_NAME
    assert doc["spec"]["names"]["shortNames"] == ["sj"]
    columns = [c["name"] for c in doc["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Task", "Schedule", "Paused", "Ready", "Last Status", "Last Run", "Next Run", "Age"]
