#!/usr/bin/env bash
# Create the kind cluster for IPA-bench, build the image, load it (and Prometheus') into the node,
# and wait until the node and cluster DNS are ready.
#   cluster/up.sh                 emulated-mode image (small)
#   WITH_TORCH=1 cluster/up.sh    image that can also run real models
# Environment: IPA_KIND_CLUSTER (default ipa), IPA_K8S_IMAGE (the image tag to build, default ipa-bench:dev).
# Prometheus itself is created per run, inside the run's namespace (see cluster/README.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=cluster/lib.sh
. "$here/lib.sh"

cluster="${IPA_KIND_CLUSTER:-ipa}"
image="${IPA_K8S_IMAGE:-ipa-bench:dev}"
with_torch="${WITH_TORCH:-0}"
context="kind-$cluster"

require docker kind kubectl
require_docker_engine

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "kind cluster '$cluster' exists: reusing it"
else
  kind create cluster --name "$cluster" --config "$here/kind.yaml" --wait 180s
fi

docker build -f "$here/Dockerfile" --build-arg WITH_TORCH="$with_torch" -t "$image" "$root"
kind load docker-image "$image" --name "$cluster"
docker pull "$PROMETHEUS_IMAGE"
kind load docker-image "$PROMETHEUS_IMAGE" --name "$cluster"

kubectl --context "$context" wait --for=condition=Ready nodes --all --timeout=180s
kubectl --context "$context" -n kube-system rollout status deployment/coredns --timeout=180s

cpus="$(kubectl --context "$context" get nodes -o jsonpath='{.items[0].status.allocatable.cpu}')"
cat <<MSG
kind cluster '$cluster' is ready (allocatable CPU on the node: $cpus).
  kubectl config use-context $context      # or: export KUBECONFIG=\$(kind get kubeconfig-path) on old kind
  ipa run ... --backend kubernetes --backend-option image=$image
                                          # router on 127.0.0.1:30950, Prometheus on 127.0.0.1:30990
  IPA_CLUSTER_BACKEND_OPTIONS="image=$image" pytest -m cluster   # the live end-to-end test
MSG
