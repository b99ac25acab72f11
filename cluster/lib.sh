# shellcheck shell=bash
# Shared by the cluster scripts: prerequisite checks that say what is missing and where to get it.

# require TOOL... : exit 1 naming every missing tool, with where to get it.
require() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]} > 0)); then
    echo "missing: ${missing[*]}" >&2
    for tool in "${missing[@]}"; do
      case "$tool" in
        docker) echo "  docker:   https://docs.docker.com/engine/install/ (an engine, not only the client)" >&2 ;;
        kind) echo "  kind:     https://kind.sigs.k8s.io/docs/user/quick-start/#installation" >&2 ;;
        minikube) echo "  minikube: https://minikube.sigs.k8s.io/docs/start/" >&2 ;;
        kubectl) echo "  kubectl:  https://kubernetes.io/docs/tasks/tools/" >&2 ;;
        *) echo "  $tool" >&2 ;;
      esac
    done
    exit 1
  fi
}

# require_docker_engine: the docker client alone cannot build or load images.
require_docker_engine() {
  if ! docker info >/dev/null 2>&1; then
    echo "docker is installed but no Docker engine answers ('docker info' failed): start the engine" \
      "(or set DOCKER_HOST) and retry" >&2
    exit 1
  fi
}

# The Prometheus image each run's namespace uses (ClusterOptions.prometheus_image; a test keeps them equal).
PROMETHEUS_IMAGE="docker.io/prom/prometheus:v3.5.0"
export PROMETHEUS_IMAGE
