"""Generate the SyncJob CustomResourceDefinition from the typed model, so the schema has one source.

`python -m syncjob.crd` prints the CRD as YAML (`make crds` writes it to crds/); a test fails when the committed file
and the model disagree. Pydantic's JSON schema is turned into a Kubernetes structural schema: references inlined,
optional fields unwrapped, `options` left open, sources a set-typed list, CEL rules and printer columns added.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from syncjob import names
from syncjob.model import MAX_NAME_LENGTH, SyncJobSpec, SyncJobStatus

_DROP = {"title"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        target.update(node)  # a field's own description and default win over the referenced type's
        node = target
    if "anyOf" in node:  # Optional[X] is X in Kubernetes: absent means unset
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express union {options} in a structural schema")
        inner = _structural(options[0], defs)
        inner.update({k: v for k, v in node.items() if k not in ("default",)})
        if node.get("default") is not None:
            inner["default"] = node["default"]
        node = inner
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {k: _structural(v, defs) for k, v in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            continue
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("format") == "date-time":
        out["type"] = "string"
    return out


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="serialization")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(raw, defs)
    return schema


def spec_schema() -> dict[str, Any]:
    schema = openapi_schema(SyncJobSpec)
    props = schema["properties"]
    props["sources"]["x-kubernetes-list-type"] = "set"  # the API server rejects duplicates
    props["sources"]["x-kubernetes-validations"] = [
        {"rule": "self.size() > 0", "message": "sources must name at least one source"},
        {"rule": "self.all(s, self.exists_one(t, t == s))", "message": "sources must not repeat a source"},
    ]
    props["schedule"]["x-kubernetes-validations"] = [
        {"rule": "!self.contains('TZ=')", "message": "put the time zone in spec.timeZone, not in the schedule"},
    ]
    props["task"]["x-kubernetes-validations"] = [
        {"rule": "self in ['basics', 'quotes', 'daily', 'financial', 'status']",
         "message": "task must be one of basics, quotes, daily, financial, status"},
    ]
    return schema


def status_schema() -> dict[str, Any]:
    schema = openapi_schema(SyncJobStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


PRINTER_COLUMNS = [
    {"name": "Task", "type": "string", "jsonPath": ".spec.task"},
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
    {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Last Status", "type": "string", "jsonPath": ".status.lastExecution.status"},
    {"name": "Last Run", "type": "date", "jsonPath": ".status.lastExecution.startedAt"},
    # kubectl renders a `date` column in the future as <invalid>: the next run is shown as the time it is.
    {"name": "Next Run", "type": "string", "jsonPath": ".status.nextScheduleTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": names.CRD_NAME, "labels": {"app.kubernetes.io/name": "syncjob-operator"}},
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {"kind": names.KIND, "plural": names.PLURAL, "singular": names.SINGULAR,
                      "shortNames": names.SHORT_NAMES, "listKind": f"{names.KIND}List",
                      "categories": ["all", "syncjobs"]},
            "versions": [{
                "name": names.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "SyncJob schedules one A-share market-data sync task (basics, quotes, daily, "
                                   "financial or status) with source fallback; the operator runs it as a CronJob.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string", "description": "API version of this object."},
                        "kind": {"type": "string", "description": "Kind of this object: SyncJob."},
                        "metadata": {"type": "object"},
                        "spec": spec_schema(),
                        "status": status_schema(),
                    },
                    "x-kubernetes-validations": [{
                        "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                        "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters: the CronJob and its "
                                   "Jobs are named after it",
                    }],
                }},
            }],
        },
    }


def render() -> str:
    header = "# Generated from syncjob/model.py by `make crds` (python -m syncjob.crd); do not edit.\n"
    body: str = yaml.safe_dump(crd(), sort_keys=False, allow_unicode=True, width=120)
    return header + body


if __name__ == "__main__":
    print(render(), end="")
