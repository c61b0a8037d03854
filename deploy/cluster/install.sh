#!/usr/bin/env bash
# Install the monitoring stack and Vigil into the cluster of the current kubectl context:
# what helmfile.yaml describes, through `helm upgrade --install` with the same charts,
# versions and values (tests/deploy/test_cluster.py checks that they agree): the stack's
# charts, the monitoring kustomization, then Vigil's chart (deploy/charts/vigil) with the
# overlay's values. Idempotent: run it again to upgrade.
#
# NOT RUN IN THIS PROJECT'S CI: no cluster can run there. The tests check what can be
# checked offline (rendering, schemas, versions; `--dry-run` of this script).
#
# Usage:
#   deploy/cluster/install.sh [--dry-run] dev|prod   everything, for that overlay
#   deploy/cluster/install.sh [--dry-run] secrets    only namespaces and Secrets (before
#                                                     `helmfile apply`)
# Needs: kubectl, helm 3.17+ (`make setup` puts both in .venv/bin) and Python 3.11 with
# PyYAML (the project's .venv works) for the generate.py scripts. --dry-run prints the commands instead of running them.
#
# Environment:
#   PYTHON                interpreter (default: .venv/bin/python if present, else python3)
#   POSTGRES_EXPORTER=1   also install the PostgreSQL exporter example (first set its
#                         database in values/prometheus-postgres-exporter.yaml)
#   RECEIVER_SECRETS_DIR  a directory with the files alertmanager.yml reads: slack-url,
#                         smtp-password, pagerduty-routing-key (see that file). Without
#                         it an existing Secret alertmanager-receivers is kept; a new one
#                         gets only the remediator's token, and those receivers fail until
#                         you add the files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
fi
target="${1:-}"
case "${target}" in
    dev | prod | secrets) ;;
    *)
        echo "usage: $0 [--dry-run] dev|prod|secrets" >&2
        exit 2
        ;;
esac
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "${root}/.venv/bin/python" ]]; then PYTHON="${root}/.venv/bin/python"; else PYTHON=python3; fi
fi

# helm and kubectl from `make setup` (.venv/bin) when none is on PATH
for tool in helm kubectl; do
    if ! command -v "${tool}" >/dev/null 2>&1 && [[ -x "${root}/.venv/bin/${tool}" ]]; then
        PATH="${root}/.venv/bin:${PATH}"
    fi
done

MONITORING=monitoring
VIGIL=vigil
VIGIL_RELEASE=vigil
workdir="$(mktemp -d)"
trap 'rm -rf "${workdir}"' EXIT

# The charts: release|repository/chart|version|values files (relative to deploy/cluster;
# ENV is the overlay). The order is the install order: kube-prometheus-stack brings the
# CRDs the others' ServiceMonitors need.
RELEASES=(
    "kube-prometheus-stack|prometheus-community/kube-prometheus-stack|88.5.3|values/kube-prometheus-stack.yaml values/generated/kube-prometheus-stack.rules.yaml values/generated/remote-write.ENV.yaml"
    "loki|grafana-community/loki|18.11.0|values/loki.yaml"
    "alloy|grafana/alloy|1.11.1|values/alloy.yaml"
    "tempo|grafana-community/tempo|2.2.4|values/tempo.yaml"
    "opentelemetry-collector|open-telemetry/opentelemetry-collector|0.170.0|values/opentelemetry-collector.yaml"
    "prometheus-blackbox-exporter|prometheus-community/prometheus-blackbox-exporter|11.17.2|values/prometheus-blackbox-exporter.yaml"
    "postgres-exporter|prometheus-community/prometheus-postgres-exporter|8.2.0|values/prometheus-postgres-exporter.yaml"
)
REPOSITORIES=(
    "prometheus-community|https://prometheus-community.github.io/helm-charts"
    "grafana-community|https://grafana-community.github.io/helm-charts"
    "grafana|https://grafana.github.io/helm-charts"
    "open-telemetry|https://open-telemetry.github.io/opentelemetry-helm-charts"
)

run() {
    if [[ "${dry_run}" == 1 ]]; then
        echo "+ $*"
    else
        "$@"
    fi
}

# `kubectl apply` of what a `kubectl create ... --dry-run=client -o yaml` prints, so that
# an existing object is updated rather than refused
apply_created() {
    if [[ "${dry_run}" == 1 ]]; then
        echo "+ kubectl $* --dry-run=client -o yaml | kubectl apply -f -"
    else
        kubectl "$@" --dry-run=client -o yaml | kubectl apply -f -
    fi
}

exists() {
    [[ "${dry_run}" == 0 ]] && kubectl get "$@" >/dev/null 2>&1
}

random_token() {
    "${PYTHON}" -c 'import secrets; print(secrets.token_hex(32), end="")'
}

check_generated() {
    run "${PYTHON}" "${here}/generate.py" --check
    run "${PYTHON}" "${root}/deploy/charts/generate.py" --check
}

secrets() {
    apply_created create namespace "${MONITORING}"
    run kubectl apply -k "${here}/vigil/namespace"

    # the remediator's tokens: webhook (Alertmanager presents it) and admin (approvals,
    # pause/resume); generated once, kept afterwards
    if ! exists -n "${VIGIL}" secret vigil-remediator-tokens; then
        if [[ "${dry_run}" == 1 ]]; then
            echo "+ kubectl -n ${VIGIL} create secret generic vigil-remediator-tokens --from-literal=webhook-token=<random> --from-literal=admin-token=<random>"
        else
            kubectl -n "${VIGIL}" create secret generic vigil-remediator-tokens \
                --from-literal=webhook-token="$(random_token)" \
                --from-literal=admin-token="$(random_token)"
        fi
    fi

    # the detector's token: it refuses to listen on 0.0.0.0 without one. The same value in
    # both namespaces: the detector and the remediator's vigil.verify steps read it in
    # vigil, Prometheus presents it on remote-write from monitoring. Generated once, kept
    local detector_token_file="${workdir}/detector-token"
    if exists -n "${VIGIL}" secret vigil-detector-token; then
        kubectl -n "${VIGIL}" get secret vigil-detector-token \
            -o jsonpath='{.data.token}' | base64 -d >"${detector_token_file}"
    elif [[ "${dry_run}" == 1 ]]; then
        echo "+ kubectl -n ${VIGIL} create secret generic vigil-detector-token --from-literal=token=<random>"
        printf '<random>' >"${detector_token_file}"
    else
        random_token >"${detector_token_file}"
        kubectl -n "${VIGIL}" create secret generic vigil-detector-token \
            "--from-file=token=${detector_token_file}"
    fi
    apply_created -n "${MONITORING}" create secret generic vigil-detector-token \
        "--from-file=token=${detector_token_file}"

    # the receivers' credentials, plus the same webhook token for alertmanager.yml's
    # vigil-remediator receiver (it reads /etc/alertmanager/secrets/vigil-remediator-token)
    local token_file="${workdir}/webhook-token"
    : >"${token_file}"
    if [[ "${dry_run}" == 0 ]]; then
        kubectl -n "${VIGIL}" get secret vigil-remediator-tokens \
            -o jsonpath='{.data.webhook-token}' | base64 -d >"${token_file}"
    fi
    if [[ -n "${RECEIVER_SECRETS_DIR:-}" ]]; then
        local args=()
        for name in slack-url smtp-password pagerduty-routing-key; do
            [[ -f "${RECEIVER_SECRETS_DIR}/${name}" ]] || {
                echo "install.sh: ${RECEIVER_SECRETS_DIR}/${name} is missing" >&2
                exit 2
            }
            args+=("--from-file=${name}=${RECEIVER_SECRETS_DIR}/${name}")
        done
        apply_created -n "${MONITORING}" create secret generic alertmanager-receivers \
            "${args[@]}" "--from-file=vigil-remediator-token=${token_file}"
    elif ! exists -n "${MONITORING}" secret alertmanager-receivers; then
        echo "install.sh: RECEIVER_SECRETS_DIR not set: Slack, e-mail and PagerDuty" \
            "notifications fail until alertmanager-receivers holds their files" >&2
        apply_created -n "${MONITORING}" create secret generic alertmanager-receivers \
            "--from-file=vigil-remediator-token=${token_file}"
    fi

    # Alertmanager's configuration: deploy/config/alertmanager.yml, rendered for the
    # cluster by deploy/config/render.py (through generate.py)
    local am_file="${workdir}/alertmanager.yaml"
    if [[ "${dry_run}" == 1 ]]; then
        echo "+ ${PYTHON} ${here}/generate.py --alertmanager-config >${am_file}"
    else
        "${PYTHON}" "${here}/generate.py" --alertmanager-config >"${am_file}"
    fi
    apply_created -n "${MONITORING}" create secret generic alertmanager-vigil \
        "--from-file=alertmanager.yaml=${am_file}"
}

charts() {
    local env="$1"
    for repo in "${REPOSITORIES[@]}"; do
        run helm repo add --force-update "${repo%%|*}" "${repo#*|}"
    done
    run helm repo update
    for line in "${RELEASES[@]}"; do
        IFS='|' read -r release chart version values <<<"${line}"
        if [[ "${release}" == postgres-exporter && "${POSTGRES_EXPORTER:-0}" != 1 ]]; then
            echo "install.sh: skipping ${release} (example; POSTGRES_EXPORTER=1 installs it)" >&2
            continue
        fi
        local args=()
        for file in ${values//ENV/${env}}; do
            args+=(--values "${here}/${file}")
        done
        run helm upgrade --install "${release}" "${chart}" --version "${version}" \
            --namespace "${MONITORING}" --create-namespace --wait --timeout 15m "${args[@]}"
    done
}

check_generated
secrets
if [[ "${target}" != secrets ]]; then
    charts "${target}"
    run kubectl apply --server-side -k "${here}/monitoring"
    # Vigil: its chart with the overlay's values (the overlay renders the same chart for
    # GitOps: kubectl kustomize --enable-helm vigil/overlays/<env>)
    run helm upgrade --install "${VIGIL_RELEASE}" "${root}/deploy/charts/vigil" \
        --namespace "${VIGIL}" --wait --timeout 15m \
        --values "${here}/vigil/overlays/${target}/values.yaml"
    echo "install.sh: done. Vigil: kubectl -n ${VIGIL} get pods; Grafana: kubectl -n" \
        "${MONITORING} port-forward svc/kube-prometheus-stack-grafana 3000:80"
fi
