#!/usr/bin/env bash
# End-to-end on kind (needs Docker, kind and kubectl): install manifests/default with the images just built, run
# the demo's file-source SyncJob once through a kubectl trigger, and check its record and its data in MongoDB.
#
#   hack/kind-e2e.sh REGISTRY TAG      (make kind-e2e builds the images first, then runs this)
#
# KIND_CLUSTER names the cluster (default syncjob-e2e); KEEP_CLUSTER=1 leaves it running for a look around.
set -euo pipefail

REGISTRY=${1:?usage: hack/kind-e2e.sh REGISTRY TAG}
TAG=${2:?usage: hack/kind-e2e.sh REGISTRY TAG}
CLUSTER=${KIND_CLUSTER:-syncjob-e2e}
SYSTEM=syncjob-system
NS=market-data
JOB=demo-file-daily
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
KUBECTL=(kubectl --context "kind-$CLUSTER")

log() { printf '==> %s\n' "$*"; }
die() { printf 'kind-e2e: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH"
done
for image in syncjob-operator syncjob-api syncjob-sync; do
  docker image inspect "$REGISTRY/$image:$TAG" >/dev/null 2>&1 || die "image $REGISTRY/$image:$TAG not built (make images)"
done

diagnose() {
  log "Diagnostics"
  "${KUBECTL[@]}" get sj,cronjobs,jobs,pods -n "$NS" -o wide || true
  "${KUBECTL[@]}" get pods -n "$SYSTEM" -o wide || true
  "${KUBECTL[@]}" get events -n "$NS" --sort-by=.lastTimestamp | tail -30 || true
  "${KUBECTL[@]}" logs -n "$NS" -l "sync.tradingagents.io/syncjob=$JOB" --tail=100 || true
  "${KUBECTL[@]}" logs -n "$SYSTEM" deploy/syncjob-operator --tail=100 || true
  "${KUBECTL[@]}" logs -n "$SYSTEM" deploy/syncjob-api --tail=50 || true
}

cleanup() {
  status=$?
  if [ "$status" -ne 0 ] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then diagnose; fi
  if [ "${KEEP_CLUSTER:-}" = 1 ]; then
    log "Kept cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  if [ "$status" -eq 0 ]; then log "PASSED"; else log "FAILED"; fi
}
trap cleanup EXIT

log "Creating kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --wait 180s

log "Loading images"
for image in syncjob-operator syncjob-api syncjob-sync; do
  kind load docker-image "$REGISTRY/$image:$TAG" --name "$CLUSTER"
done
docker image inspect mongo:7 >/dev/null 2>&1 || docker pull mongo:7
kind load docker-image mongo:7 --name "$CLUSTER"

log "Installing manifests/default with $REGISTRY/*:$TAG"
# A copy of manifests/ and crds/ plus an overlay that pins the images just loaded (SYNC_IMAGE included).
cp -R "$ROOT/manifests" "$ROOT/crds" "$WORK/"
mkdir "$WORK/e2e"
cp "$ROOT/manifests/default/images.yaml" "$WORK/e2e/images.yaml"
cat >"$WORK/e2e/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../manifests/default
configurations:
- images.yaml
images:
- name: ghcr.io/tradingagents/syncjob-operator
  newName: $REGISTRY/syncjob-operator
  newTag: "$TAG"
- name: ghcr.io/tradingagents/syncjob-api
  newName: $REGISTRY/syncjob-api
  newTag: "$TAG"
- name: ghcr.io/tradingagents/syncjob-sync
  newName: $REGISTRY/syncjob-sync
  newTag: "$TAG"
YAML
"${KUBECTL[@]}" apply --server-side -k "$WORK/e2e"
"${KUBECTL[@]}" wait --for=condition=Established --timeout=60s crd/syncjobs.sync.tradingagents.io

log "Creating the Secrets and namespace $NS"
secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
PASSWORD=$(secret) OPERATOR_PASSWORD=$(secret) API_PASSWORD=$(secret) SYNC_PASSWORD=$(secret)
# One MongoDB user per component (docs/security.md); the bundled MongoDB creates them at its first start.
HOST="syncjob-mongodb.$SYSTEM.svc.cluster.local:27017"
"${KUBECTL[@]}" create secret generic syncjob-mongodb -n "$SYSTEM" \
  --from-literal=MONGO_INITDB_ROOT_USERNAME=root --from-literal=MONGO_INITDB_ROOT_PASSWORD="$PASSWORD" \
  --from-literal=SYNCJOB_OPERATOR_PASSWORD="$OPERATOR_PASSWORD" --from-literal=SYNCJOB_API_PASSWORD="$API_PASSWORD" \
  --from-literal=SYNCJOB_SYNC_PASSWORD="$SYNC_PASSWORD"
"${KUBECTL[@]}" create secret generic syncjob-mongo-operator -n "$SYSTEM" \
  --from-literal=MONGO_URI="mongodb://syncjob-operator:$OPERATOR_PASSWORD@$HOST/tradingagents"
"${KUBECTL[@]}" create secret generic syncjob-mongo-api -n "$SYSTEM" \
  --from-literal=MONGO_URI="mongodb://syncjob-api:$API_PASSWORD@$HOST/tradingagents"
"${KUBECTL[@]}" create namespace "$NS"
"${KUBECTL[@]}" label namespace "$NS" pod-security.kubernetes.io/enforce=restricted
"${KUBECTL[@]}" create secret generic syncjob-mongo -n "$NS" \
  --from-literal=MONGO_URI="mongodb://syncjob-sync:$SYNC_PASSWORD@$HOST/tradingagents"
"${KUBECTL[@]}" apply -k "$ROOT/manifests/sync-namespace" -n "$NS"

log "Waiting for MongoDB, the operator and the API"
"${KUBECTL[@]}" rollout status -n "$SYSTEM" statefulset/syncjob-mongodb --timeout=300s
"${KUBECTL[@]}" rollout status -n "$SYSTEM" deployment/syncjob-operator --timeout=300s
"${KUBECTL[@]}" rollout status -n "$SYSTEM" deployment/syncjob-api --timeout=300s

log "Applying SyncJob $JOB and triggering one run"
"${KUBECTL[@]}" apply -k "$ROOT/manifests/samples/demo" -n "$NS"
"${KUBECTL[@]}" wait "sj/$JOB" -n "$NS" --for=condition=Ready --timeout=120s
TOKEN=$(date +%s)
"${KUBECTL[@]}" annotate sj "$JOB" -n "$NS" "sync.tradingagents.io/requested-at=$TOKEN" --overwrite
# The run's Job name is the SyncJob name, "-m" and the first 10 hex digits of the token's SHA-256 (syncjob.runs).
if command -v sha256sum >/dev/null; then DIGEST=$(printf %s "$TOKEN" | sha256sum); else DIGEST=$(printf %s "$TOKEN" | shasum -a 256); fi
RUN="$JOB-m${DIGEST:0:10}"

log "Waiting for Job $RUN"
outcome=""
for _ in $(seq 1 180); do
  outcome=$("${KUBECTL[@]}" get job "$RUN" -n "$NS" -o jsonpath='{.status.conditions[?(@.status=="True")].type}' 2>/dev/null || true)
  case "$outcome" in *Complete*|*Failed*) break ;; esac
  sleep 2
done
case "$outcome" in
  *Complete*) log "Job $RUN completed" ;;
  *) die "Job $RUN did not complete (conditions: ${outcome:-none})" ;;
esac

log "Checking the run's record and data in MongoDB"
# The operator closes the record from the Job's verdict; give it a moment after the Job completes.
for _ in $(seq 1 30); do
  result=$("${KUBECTL[@]}" exec -n "$SYSTEM" syncjob-mongodb-0 -- mongosh --quiet --norc -u root -p "$PASSWORD" \
    --authenticationDatabase admin tradingagents --eval "
      const r = db.scheduler_executions.findOne({_id: '$RUN'});
      print((r ? r.status : 'missing') + ' ' + db.stock_daily_quotes.countDocuments({data_source: 'file'}));")
  case "$result" in success\ *) break ;; esac
  sleep 2
done
read -r status bars <<<"$result"
[ "$status" = success ] || die "record $RUN: status ${status:-missing} (want success)"
[ "${bars:-0}" -gt 0 ] || die "no daily bars from the file source in tradingagents.stock_daily_quotes"
log "Record $RUN is success; $bars daily bars landed"
