#!/usr/bin/env bash
# Delete the kind cluster created by cluster/up.sh (and everything in it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=cluster/lib.sh
. "$here/lib.sh"

cluster="${IPA_KIND_CLUSTER:-ipa}"
require kind
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind delete cluster --name "$cluster"
else
  echo "no kind cluster named '$cluster': nothing to delete"
fi
