#!/usr/bin/env bash
# Run Vigil's Kubernetes contract tests (tests/kube) against a real kind cluster.
#
# NOT RUN IN THIS PROJECT'S CI. CI machines have no Docker daemon, so this script has never
# been executed there; CI runs the same tests against the in-process API double
# (tests/kube/apiserver.py). Run it by hand on a machine with Docker and kind whenever the
# double or the remediator's use of the API changes: a test that passes on the double and
# fails here is a divergence to fix in the double (or to mark with divergence() in
# tests/kube/fixtures.py).
#
# Needs: a running Docker daemon, kind (v0.27 or later), and the project's virtualenv
#        (`make setup`). The node image must bundle registry.k8s.io/pause:3.10, which kind's
#        node images do.
# Usage: deploy/e2e/kind.sh [extra pytest arguments]
# Environment:
#   KIND_CLUSTER_NAME  cluster name (default: vigil-e2e)
#   KIND_NODE_IMAGE    node image (default: kindest/node:v1.32.2, the double's default version)
#   KEEP_CLUSTER=1     leave the cluster and its kubeconfig in place afterwards
#   PYTHON             interpreter with the test extras (default: .venv/bin/python)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
cluster="${KIND_CLUSTER_NAME:-vigil-e2e}"
image="${KIND_NODE_IMAGE:-kindest/node:v1.32.2}"
python="${PYTHON:-${root}/.venv/bin/python}"
keep="${KEEP_CLUSTER:-0}"

die() {
    echo "kind.sh: $*" >&2
    exit 2
}

for tool in docker kind; do
    command -v "${tool}" >/dev/null 2>&1 || die "${tool} is not installed"
done
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable"
[[ -x "${python}" ]] || die "${python} not found: run 'make setup' first"
if kind get clusters 2>/dev/null | grep -qx "${cluster}"; then
    die "a kind cluster named ${cluster} already exists; delete it or set KIND_CLUSTER_NAME"
fi

workdir="$(mktemp -d)"
kubeconfig="${workdir}/kubeconfig"

cleanup() {
    local rc=$?
    if [[ "${keep}" == 1 ]]; then
        echo "kind.sh: kept cluster ${cluster}; kubeconfig: ${kubeconfig}"
    else
        kind delete cluster --name "${cluster}" >/dev/null 2>&1 || true
        rm -rf "${workdir}"
    fi
    exit "${rc}"
}
trap cleanup EXIT

echo "kind.sh: creating cluster ${cluster} (${image})"
kind create cluster --name "${cluster}" --image "${image}" --kubeconfig "${kubeconfig}" \
    --wait 180s

echo "kind.sh: running the contract tests against it"
cd "${root}"
VIGIL_KUBECONFIG="${kubeconfig}" "${python}" -m pytest -p no:cacheprovider -m kube tests/kube "$@"
