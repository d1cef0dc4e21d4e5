#!/usr/bin/env bash
# End-to-end on kind (needs Docker, kind and kubectl): install manifests/default with the images just built, then
# run the deployed scenario that `make test` runs on its real node (tests/deploy/scenario.py): Deployments Ready,
# samples Ready, a scheduled tick, a kubectl trigger, an API trigger and a cancel, with their records in MongoDB.
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
  "${KUBECTL[@]}" logs -n "$NS" -l "sync.tradingagents.io/syncjob" --tail=100 || true
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

log "Waiting for MongoDB"
"${KUBECTL[@]}" rollout status -n "$SYSTEM" statefulset/syncjob-mongodb --timeout=300s

# The scenario reaches the API and MongoDB (as root) through port-forwards; the pods use in-cluster addresses and
# the Secrets made above, so the scenario leaves the namespace $NS as it is.
API_PORT=18000
MONGO_PORT=18017
"${KUBECTL[@]}" port-forward -n "$SYSTEM" svc/syncjob-api "$API_PORT:80" >"$WORK/pf-api.log" 2>&1 &
FORWARDS=$!
"${KUBECTL[@]}" port-forward -n "$SYSTEM" pod/syncjob-mongodb-0 "$MONGO_PORT:27017" >"$WORK/pf-mongo.log" 2>&1 &
FORWARDS="$FORWARDS $!"
trap 'kill $FORWARDS 2>/dev/null || true; cleanup' EXIT

log "Running the deployed scenario (tests/deploy/scenario.py, shared with make test's real-node test)"
cd "$ROOT"
"${PYTHON:-$ROOT/.venv/bin/python}" -m tests.deploy.scenario --context "kind-$CLUSTER" --namespace "$NS" \
  --api-url "http://127.0.0.1:$API_PORT" \
  --mongo-uri "mongodb://root:$PASSWORD@127.0.0.1:$MONGO_PORT/tradingagents?authSource=admin&directConnection=true"
