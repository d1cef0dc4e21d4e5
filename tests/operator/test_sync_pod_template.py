"""Unit tests of the pod-template setting: operator-wide defaults, a SyncJob's override, and the pod they shape."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from syncjob_operator import builders
from syncjob_operator.settings import OperatorSettings
from syncjob_operator.sync_pod_template import merge_templates

from syncjob.model import PodTemplate, SyncJob

DEFAULTS = {
    "resources": {"requests": {"cpu": "200m"}, "limits": {"memory": "2Gi"}},
    "nodeSelector": {"pool": "batch", "zone": "a"},
    "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
    "imagePullSecrets": [{"name": "registry"}],
    "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}, {"name": "TZ", "value": "UTC"}],
    "hostNetwork": True,
}


def syncjob(pod_template: dict[str, Any] | None = None) -> SyncJob:
    spec: dict[str, Any] = {"task": "daily", "schedule": "0 17 * * 1-5"}
    if pod_template is not None:
        spec["podTemplate"] = pod_template
    return SyncJob.from_k8s({"metadata": {"name": "daily", "namespace": "market-data", "uid": "u"}, "spec": spec})


def pod_of(sj: SyncJob, settings: OperatorSettings) -> dict[str, Any]:
    spec: dict[str, Any] = builders.job_spec(sj, settings)["template"]["spec"]
    return spec


def test_without_a_template_the_pod_is_the_operators_own() -> None:
    pod = pod_of(syncjob(), OperatorSettings(mongo_uri="mongodb://127.0.0.1:1/x"))
    assert not {"hostNetwork", "nodeSelector", "tolerations", "affinity", "imagePullSecrets"} & set(pod)
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                 "limits": {"memory": "1Gi"}}


def test_operator_defaults_reach_every_pod_from_yaml_or_json_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_POD_TEMPLATE", "hostNetwork: true\nnodeSelector: {pool: batch}\n")
    monkeypatch.setenv("MONGO_URI", "mongodb://127.0.0.1:1/x")
    pod = pod_of(syncjob(), OperatorSettings())  # type: ignore[call-arg]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"] == {"pool": "batch"}
    monkeypatch.setenv("SYNC_POD_TEMPLATE", '{"priorityClassName": "low"}')
    assert pod_of(syncjob(), OperatorSettings())["priorityClassName"] == "low"  # type: ignore[call-arg]


def test_the_syncjob_wins_maps_by_key_env_by_name_lists_replaced() -> None:
    settings = OperatorSettings(mongo_uri="mongodb://127.0.0.1:1/x", sync_pod_template=PodTemplate(**DEFAULTS))
    pod = pod_of(syncjob({
        "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "4Gi", "cpu": 2}},
        "nodeSelector": {"zone": "b"},
        "tolerations": [],
        "env": [{"name": "TZ", "value": "Asia/Shanghai"},
                {"name": "PROXY_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "password"}}}],
        "hostNetwork": False,
    }), settings)
    container = pod["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "200m", "memory": "1Gi"},
                                      "limits": {"memory": "4Gi", "cpu": 2}}
    assert pod["nodeSelector"] == {"pool": "batch", "zone": "b"}
    assert pod["tolerations"] == []
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert "hostNetwork" not in pod
    extra = {e["name"]: e for e in container["env"] if not e["name"].startswith(("SYNC", "MONGO", "TUSHARE"))}
    assert extra == {
        "HTTPS_PROXY": {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
        "TZ": {"name": "TZ", "value": "Asia/Shanghai"},
        "PROXY_PASSWORD": {"name": "PROXY_PASSWORD",
                           "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "password"}}},
    }


def test_affinity_and_the_pod_contract_stay_intact() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["batch"]}]}]}}}
    settings = OperatorSettings(mongo_uri="mongodb://127.0.0.1:1/x")
    plain, shaped = pod_of(syncjob(), settings), pod_of(syncjob({"affinity": affinity}), settings)
    assert shaped["affinity"] == affinity
    assert shaped["containers"][0]["env"] == plain["containers"][0]["env"]
    assert shaped["securityContext"] == plain["securityContext"]


def test_the_pod_contracts_variables_are_refused() -> None:
    with pytest.raises(ValidationError, match="MONGO_URI"):
        syncjob({"env": [{"name": "MONGO_URI", "value": "mongodb://elsewhere"}]})


def test_merge_of_nothing_is_empty() -> None:
    assert merge_templates(None, None) == PodTemplate()
    assert merge_templates(PodTemplate(host_network=True), None).host_network is True
