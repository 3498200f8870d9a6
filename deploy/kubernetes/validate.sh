#!/usr/bin/env bash
# Validates the manifests here against the Kubernetes API schemas, strictly
# (unknown fields are errors), for the versions below.
#
#   bash deploy/kubernetes/validate.sh [K8S_VERSION...]   (default: 1.30 1.33)
#
# The validator: kubernetes-validate from PyPI (it ships the schemas, so no
# network is needed once installed), in a venv under /tmp, never the system
# Python. kubeconform and kubeval are Go binaries with no PyPI, npm or Debian
# package, so they are not used. Then the fiddler.toml inside the ConfigMap
# is loaded by a real fiddler_crab, if one is given as FIDDLER_CRAB=PATH.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(1.30 1.33)
venv=${FC_VALIDATE_VENV:-/tmp/fc-kubernetes-validate-venv}
pin=kubernetes-validate==1.37.0

if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$pin"
fi
echo "validator: $("$venv/bin/kubernetes-validate" --version 2>&1 | tail -1)"

files=(configmap.yaml deployment.yaml service.yaml pdb.yaml hpa.yaml)
# Everything kustomization.yaml lists is validated, and nothing is left out.
listed=$(sed -n 's/^  - //p' "$here/kustomization.yaml" | sort | tr '\n' ' ')
wanted=$(printf '%s\n' "${files[@]}" | sort | tr '\n' ' ')
if [ "$listed" != "$wanted" ]; then
    echo "kustomization.yaml lists: $listed; validated: $wanted" >&2
    exit 1
fi

status=0
for v in "${versions[@]}"; do
    echo "--- Kubernetes $v"
    (cd "$here" && "$venv/bin/kubernetes-validate" --strict --kubernetes-version "$v" "${files[@]}") || status=1
done

# The config inside the ConfigMap must load: a real server, on ephemeral
# ports, started and stopped (exit 2 would be a config error).
if [ -n "${FIDDLER_CRAB:-}" ]; then
    tmp=$(mktemp -d /tmp/fc-validate.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    "$venv/bin/python" - "$here/configmap.yaml" "$tmp/fiddler.toml" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[2], "w").write(doc["data"]["fiddler.toml"])
EOF
    "$FIDDLER_CRAB" -c "$tmp/fiddler.toml" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
        2>"$tmp/log" &
    pid=$!
    for _ in $(seq 100); do
        grep -q 'admin on' "$tmp/log" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q 'admin on' "$tmp/log"; then
        kill -TERM "$pid"
        wait "$pid" && echo "fiddler.toml from configmap.yaml: loads" || status=1
    else
        wait "$pid" || true
        echo "fiddler.toml from configmap.yaml does not load:" >&2
        cat "$tmp/log" >&2
        status=1
    fi
fi
exit "$status"
