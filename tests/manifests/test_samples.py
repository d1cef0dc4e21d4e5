"""The samples: the incumbent's scheduled jobs as SyncJobs, meaning what the incumbent meant, accepted by the API
server as written, plus the demo's file-source job."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from croniter import croniter
from kubernetes import client

from syncjob import names
from syncjob.model import Source, SyncJob, Task
from testbed.cluster import LocalCluster
from tests.manifests.conftest import MANIFESTS, build, kubectl_bin

# incumbent.md §2.1: every scheduled job but news_sync (no news task) and check_zombie_tasks (replaced by the
# operator's execution truth).
INCUMBENT_JOBS = {
    "basics_sync_service", "quotes_ingestion_service",
    "tushare_basic_info_sync", "tushare_quotes_sync", "tushare_historical_sync", "tushare_financial_sync",
    "tushare_status_check",
    "akshare_basic_info_sync", "akshare_quotes_sync", "akshare_historical_sync", "akshare_financial_sync",
    "akshare_status_check",
    "baostock_basic_info_sync", "baostock_daily_quotes_sync", "baostock_historical_sync", "baostock_status_check",
}
TZ = ZoneInfo("Asia/Shanghai")


SAMPLE_FILES = sorted(p for folder in (MANIFESTS / "samples", MANIFESTS / "samples" / "demo")
                      for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")


def samples() -> list[dict[str, Any]]:
    return build(MANIFESTS / "samples")


def demo_samples() -> list[dict[str, Any]]:
    return build(MANIFESTS / "samples" / "demo")


def rendered(file: Path) -> dict[str, Any]:
    """A sample file as its kustomization renders it (so a file left out of the kustomization fails here)."""
    by_name = {d["metadata"]["name"]: d for d in samples() + demo_samples()}
    assert file.stem in by_name, f"{file} is not listed in its kustomization.yaml (or its name is not {file.stem})"
    return by_name[file.stem]


def _weekdays_fired(schedule: str, days: int = 14) -> set[int]:
    """Python weekdays (0 = Monday) on which a schedule fires over two weeks, in Asia/Shanghai."""
    start = dt.datetime(2026, 11, 30, tzinfo=TZ)  # a Monday
    it = croniter(schedule, start - dt.timedelta(seconds=1))
    fired = set()
    while (t := it.get_next(dt.datetime)) < start + dt.timedelta(days=days):
        fired.add(t.weekday())
    return fired


def test_every_incumbent_job_is_a_sample_named_after_its_id() -> None:
    assert {d["metadata"]["name"] for d in samples()} == {j.replace("_", "-") for j in INCUMBENT_JOBS}
    assert [d["metadata"]["name"] for d in demo_samples()] == ["demo-file-daily"]


@pytest.mark.parametrize("file", SAMPLE_FILES, ids=lambda p: p.stem)
def test_sample_validates_and_says_what_it_does(file: Path) -> None:
    doc = rendered(file)
    assert doc == yaml.safe_load(file.read_text()), "kustomize must not change a sample"
    sj = SyncJob.from_k8s(doc)
    spec = sj.spec
    assert "namespace" not in doc["metadata"], "samples are applied with -n"
    assert "paused" not in doc["spec"], "a paused field in Git would undo pauses made through the API"
    assert spec.time_zone == "Asia/Shanghai"
    assert spec.display_name and spec.description
    assert spec.trading_hours_only is (spec.task is Task.QUOTES)
    if spec.task is Task.QUOTES:
        assert Source.BAOSTOCK not in spec.sources, "baostock has no real-time quotes"
    own = sj.name.split("-")[0]
    if own in {s.value for s in Source}:
        assert spec.sources[0].value == own, "the job's own source comes first"

    minute, hour, _, _, weekday = spec.schedule.split()
    text = spec.description
    if every := re.fullmatch(r"\*/(\d+)", minute):
        assert f"每{every.group(1)}分钟" in text
    elif hour == "*":
        assert "每小时" in text
    else:
        assert f"{int(hour):02d}:{int(minute):02d}" in text
    if weekday == "1-5":
        assert "周一至周五" in text
        assert _weekdays_fired(spec.schedule) == {0, 1, 2, 3, 4}, "1-5 is Monday to Friday"
    elif weekday == "0":
        assert "周日" in text
        assert _weekdays_fired(spec.schedule) == {6}, "0 is Sunday"
    else:
        assert weekday == "*"
        assert _weekdays_fired(spec.schedule) == set(range(7))


def test_intraday_quote_jobs_cover_both_trading_sessions() -> None:
    for doc in samples():
        spec = SyncJob.from_k8s(doc).spec
        if spec.task is not Task.QUOTES:
            continue
        monday = dt.datetime(2026, 11, 30, tzinfo=TZ)
        it = croniter(spec.schedule, monday)
        ticks = set()
        while (t := it.get_next(dt.datetime)).date() == monday.date():
            ticks.add(t.strftime("%H:%M"))
        assert {"09:30", "11:30", "13:00", "15:00"} <= ticks, doc["metadata"]["name"]
        assert not any("12:00" <= t < "13:00" for t in ticks), "no runs in the lunch break"


def test_demo_sample_reads_files_only() -> None:
    spec = SyncJob.from_k8s(demo_samples()[0]).spec
    assert spec.sources == [Source.FILE]
    assert spec.task is Task.DAILY


def test_api_server_accepts_every_sample_as_written(cluster: LocalCluster, syncjob_crd: str, namespace: str,
                                                    k8s: client.ApiClient) -> None:
    docs = samples() + demo_samples()
    done = subprocess.run([kubectl_bin(), f"--kubeconfig={cluster.kubeconfig}", "apply", "-n", namespace, "-f", "-"],
                          input=yaml.safe_dump_all(docs), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    api = client.CustomObjectsApi(k8s)
    live = api.list_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL)["items"]
    by_name = {item["metadata"]["name"]: item for item in live}
    assert set(by_name) == {d["metadata"]["name"] for d in docs}
    for doc in docs:
        stored = SyncJob.from_k8s(by_name[doc["metadata"]["name"]]).spec
        # What the server stored, CRD defaults filled in, is what the shared model makes of the file.
        assert json.dumps(stored.to_k8s(), sort_keys=True) == json.dumps(SyncJob.from_k8s(doc).spec.to_k8s(),
                                                                         sort_keys=True)
        assert stored.paused is False
