#!/usr/bin/env bash
# Delete the minikube profile created by cluster/minikube-up.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=cluster/lib.sh
. "$here/lib.sh"

profile="${IPA_MINIKUBE_PROFILE:-ipa}"
require minikube
if minikube -p "$profile" status >/dev/null 2>&1 || minikube profile list 2>/dev/null | grep -q " $profile "; then
  minikube delete -p "$profile"
else
  echo "no minikube profile named '$profile': nothing to delete"
fi
