#!/usr/bin/env bash
# Tests of the Helm chart (helm/angzarr-bus): helm lint through helm-sdkpy
# (Helm's own Go code), rendering with Helm's engine for each backend, and
# validation of every manifest with kubernetes-validate. See test_chart.py.
#
# Installs its two Python packages first; a failed install is an error,
# never a skipped test. Ends with `chart: N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")"

# helm-sdkpy declares Python >= 3.12 but its cffi bindings work on 3.11
# (tomllib, used by the test, needs 3.11).
HELM_SDKPY=helm-sdkpy==0.1.32
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0

deps_ok() {
  python3 - "$HELM_SDKPY" "$KUBERNETES_VALIDATE" <<'PY' 2>/dev/null
import importlib.metadata as md, sys, tomllib, yaml, helm_sdkpy, kubernetes_validate
for spec in sys.argv[1:]:
    name, version = spec.split("==")
    assert md.version(name) == version, (name, md.version(name))
PY
}

if ! deps_ok; then
  installed=false
  for attempt in 1 2; do
    if PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
      python3 -m pip install --quiet --ignore-requires-python "$HELM_SDKPY" "$KUBERNETES_VALIDATE"; then
      installed=true
      break
    fi
    echo "pip install ${HELM_SDKPY} ${KUBERNETES_VALIDATE} failed (attempt ${attempt} of 2)" >&2
    if [ "$attempt" = 1 ]; then sleep 3; fi
  done
  if ! $installed || ! deps_ok; then
    echo "error: could not install ${HELM_SDKPY} and ${KUBERNETES_VALIDATE} for $(python3 --version 2>&1)" >&2
    echo "       (python3 -m pip install --ignore-requires-python ${HELM_SDKPY} ${KUBERNETES_VALIDATE});" >&2
    echo "       the chart tests need them and are never skipped." >&2
    echo "chart: 0 passed, 1 failed"
    exit 1
  fi
fi
python3 -c 'import importlib.metadata as md; print("helm-sdkpy", md.version("helm-sdkpy"), "/ kubernetes-validate", md.version("kubernetes-validate"))'

exec python3 test_chart.py
