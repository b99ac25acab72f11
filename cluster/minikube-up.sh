#!/usr/bin/env bash
# The minikube equivalent of cluster/up.sh: start a profile, build the image inside it, load
# Prometheus' image, wait until ready, and print the node address the NodePorts answer on.
# Environment: IPA_MINIKUBE_PROFILE (default ipa), IPA_MINIKUBE_CPUS (default 8),
# IPA_MINIKUBE_MEMORY (default 16g), IPA_MINIKUBE_DRIVER (default docker), IPA_K8S_IMAGE (the image tag to build), WITH_TORCH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=cluster/lib.sh
. "$here/lib.sh"

profile="${IPA_MINIKUBE_PROFILE:-ipa}"
cpus="${IPA_MINIKUBE_CPUS:-8}"
memory="${IPA_MINIKUBE_MEMORY:-16g}"
driver="${IPA_MINIKUBE_DRIVER:-docker}"
image="${IPA_K8S_IMAGE:-ipa-bench:dev}"
with_torch="${WITH_TORCH:-0}"

require minikube kubectl
if [ "$driver" = "docker" ]; then
  require docker
  require_docker_engine
fi

if minikube -p "$profile" status >/dev/null 2>&1; then
  echo "minikube profile '$profile' is running: reusing it"
else
  minikube start -p "$profile" --driver="$driver" --cpus="$cpus" --memory="$memory" --wait=all
fi

minikube -p "$profile" image build -t "$image" -f cluster/Dockerfile --build-opt=build-arg=WITH_TORCH="$with_torch" "$root"
minikube -p "$profile" image pull "$PROMETHEUS_IMAGE"

kubectl --context "$profile" wait --for=condition=Ready nodes --all --timeout=180s
kubectl --context "$profile" -n kube-system rollout status deployment/coredns --timeout=180s

node_ip="$(minikube -p "$profile" ip)"
cat <<MSG
minikube profile '$profile' is ready.
  kubectl config use-context $profile
  ipa run ... --backend kubernetes --backend-option image=$image --backend-option node_host=$node_ip
                                     # router on $node_ip:30950, Prometheus on $node_ip:30990
  IPA_CLUSTER_BACKEND_OPTIONS="image=$image node_host=$node_ip" pytest -m cluster
On macOS/Windows with the docker driver the node address is not routable from the host: run
'kubectl port-forward' for svc/router and svc/prometheus in the run's namespace and pass
--backend-option router_url=... --backend-option prometheus_url=... instead.
MSG
