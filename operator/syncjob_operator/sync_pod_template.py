"""The pod-template setting: what users place, size and add on the pods of their runs.

The operator renders every sync pod itself (the pod contract, restricted security), yet clusters need to put those
pods on the right nodes (nodeSelector, tolerations, affinity), size them (resources), pull the image from a private
registry (imagePullSecrets), hand libraries their settings (env), and the project's test bed runs them on the
node's network (hostNetwork). Users of CronJob and Argo set these on their own pod templates; here two layers are
merged onto the operator's pod: the operator-wide defaults (`SYNC_POD_TEMPLATE`) and the SyncJob's
`spec.podTemplate`, the SyncJob winning. Maps merge by key, env by name, every other field replaces. The contract's
variables, the command, the image and the security context stay the operator's (the model refuses contract env).

Pure functions, so the merge is unit-tested without a cluster.
"""

from __future__ import annotations

import copy
from typing import Any

from syncjob.model import EnvVar, PodTemplate, ResourceRequirements


def _merge_maps(base: dict[str, Any] | None, top: dict[str, Any] | None) -> dict[str, Any] | None:
    if base is None and top is None:
        return None
    return {**(base or {}), **(top or {})}


def _merge_env(base: list[EnvVar] | None, top: list[EnvVar] | None) -> list[EnvVar] | None:
    if base is None and top is None:
        return None
    merged = {e.name: e for e in base or []}
    merged.update({e.name: e for e in top or []})
    return list(merged.values())


def merge_templates(defaults: PodTemplate | None, override: PodTemplate | None) -> PodTemplate:
    """The SyncJob's template over the operator's defaults: maps by key, env by name, the rest replaced."""
    base, top = defaults or PodTemplate(), override or PodTemplate()
    resources = None
    if base.resources or top.resources:
        b, t = base.resources or ResourceRequirements(), top.resources or ResourceRequirements()
        resources = ResourceRequirements(requests=_merge_maps(b.requests, t.requests),
                                         limits=_merge_maps(b.limits, t.limits))
    replaced = {name: getattr(top, name) if getattr(top, name) is not None else getattr(base, name)
                for name in ("tolerations", "affinity", "image_pull_secrets", "host_network", "priority_class_name")}
    return PodTemplate(
        resources=resources,
        node_selector=_merge_maps(base.node_selector, top.node_selector),
        env=_merge_env(base.env, top.env),
        **replaced,
    )


def apply_template(job: dict[str, Any], template: PodTemplate) -> dict[str, Any]:
    """A copy of the Job spec `job` with the template applied to its pod and its first (sync) container."""
    job = copy.deepcopy(job)
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    if template.resources:
        res = container.setdefault("resources", {})
        for kind in ("requests", "limits"):
            extra = getattr(template.resources, kind)
            if extra:
                res[kind] = {**res.get(kind, {}), **extra}
    if template.node_selector:
        pod["nodeSelector"] = dict(template.node_selector)
    if template.tolerations is not None:
        pod["tolerations"] = [t.to_k8s() for t in template.tolerations]
    if template.affinity is not None:
        pod["affinity"] = copy.deepcopy(template.affinity)
    if template.image_pull_secrets is not None:
        pod["imagePullSecrets"] = [s.to_k8s() for s in template.image_pull_secrets]
    if template.priority_class_name:
        pod["priorityClassName"] = template.priority_class_name
    if template.host_network:
        pod["hostNetwork"] = True
        # Names resolve as on the node, like the pod's addresses.
        pod["dnsPolicy"] = "ClusterFirstWithHostNet"
    if template.env:
        container["env"] = [*container.get("env", []), *(e.to_k8s() for e in template.env)]
    return job
