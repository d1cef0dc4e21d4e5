"""`make demo` as a user runs it: one command brings everything up, runs the demo job, prints its record, stops."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.manifests.conftest import ROOT


@pytest.mark.integration
def test_demo_smoke_runs_the_file_job_and_prints_its_record(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "testbed.demo", "--smoke", "--home", str(home)], cwd=ROOT,
                          capture_output=True, text=True, timeout=150)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    assert "Smoke run passed." in out

    record_text = out.split("/executions):\n", 1)[1].split("\nLanded:", 1)[0]
    record = json.loads(record_text)
    run_id = re.search(r"Waiting for run (\S+) to finish", out).group(1)  # type: ignore[union-attr]
    assert record["_id"] == run_id or record.get("id") == run_id
    assert record["status"] == "success"
    assert record["job_id"] == "demo-file-daily"
    assert record["is_manual"] is True and record["trigger"] == "manual"
    assert record["source_used"] == "file"
    landed = int(re.search(r"Landed: (\d+) daily bars", out).group(1))  # type: ignore[union-attr]
    assert landed > 0

    tokens = re.findall(r"^(Admin|Viewer) token +(\S+)$", out, re.MULTILINE)
    assert [kind for kind, _ in tokens] == ["Admin", "Viewer"]
    assert "/api/scheduler" in out and "operator.log" in out and "api.log" in out
    assert not (home / "env").exists(), ".demo/env points at a stopped cluster once the demo has ended"
    assert not (home / "demo.pid").exists()
