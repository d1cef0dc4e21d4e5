"""Names that cross process boundaries: the CRD's group and kind, annotation and label keys, field managers.

These are contracts (see DESIGN.md): manifests, kubectl users and GitOps tools rely on them.
"""

from __future__ import annotations

GROUP = "sync.tradingagents.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SyncJob"
PLURAL = "syncjobs"
SINGULAR = "syncjob"
SHORT_NAMES = ["sj"]
CRD_NAME = f"{PLURAL}.{GROUP}"

# kopf's own bookkeeping annotations (diff base, progress) live under this subdomain of our group.
KOPF_PREFIX = f"kopf.{GROUP}"

# Flux-style request tokens: one new value is one action.
REQUESTED_AT = f"{GROUP}/requested-at"
FORCE_AT = f"{GROUP}/force-at"
CANCEL_AT = f"{GROUP}/cancel-at"
# Written by the API together with a cancel-at token to cancel only some runs: "<token>=<runId>[,<runId>...]".
# It applies only while its token equals the current cancel-at token; without it a token cancels every active run.
CANCEL_RUNS = f"{GROUP}/cancel-runs"
# Who asked, written by the API next to a token so the audit trail names the user (kubectl users leave it unset).
REQUESTED_BY = f"{GROUP}/requested-by"
# The same for a cancel-at token: a cancel of its own, so that a cancel never renames who asked for a pending run.
CANCEL_REQUESTED_BY = f"{GROUP}/cancel-requested-by"
REQUESTER_OF = {REQUESTED_AT: REQUESTED_BY, CANCEL_AT: CANCEL_REQUESTED_BY}

# Labels the operator puts on the CronJob, the Jobs and their pods.
LABEL_SYNCJOB = f"{GROUP}/syncjob"
LABEL_TASK = f"{GROUP}/task"
LABEL_TRIGGER = f"{GROUP}/trigger"  # schedule | manual
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "syncjob-operator"

# Annotations on Jobs.
ANNOTATION_TOKEN = f"{GROUP}/token"
ANNOTATION_FORCE = f"{GROUP}/force"
ANNOTATION_SCHEDULED_TIME = "batch.kubernetes.io/cronjob-scheduled-timestamp"  # set by the CronJob controller
# Annotation on the CronJob: the digest of what the operator applied, so a restarted operator need not apply again.
ANNOTATION_APPLIED_DIGEST = f"{GROUP}/applied-digest"
# ...and the SyncJob spec it was built from (JSON), so that a spec edit can be audited with what changed.
ANNOTATION_APPLIED_SPEC = f"{GROUP}/applied-spec"

# Server-side apply / patch field managers.
FIELD_MANAGER_OPERATOR = "syncjob-operator"
FIELD_MANAGER_API = "syncjob-api"

# The Lease the operator renews so the API's health endpoint can tell it is alive.
OPERATOR_LEASE = "syncjob-operator"

# Conditions (Kubernetes API conventions: adjective types, CamelCase reasons).
CONDITION_READY = "Ready"
REASON_RECONCILED = "Reconciled"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_PAUSED = "Paused"
REASON_RECONCILE_FAILED = "ReconcileFailed"
