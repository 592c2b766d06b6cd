#!/usr/bin/env bash
# Runs every test: unit, table, simulator, the AWS adapter tests against moto's server mode,
# the end-to-end flows, and the login page in headless Chromium.
#
# It creates .venv (pinned tools from tests/requirements.txt) when missing or stale, starts
# moto_server on a free 127.0.0.1 port, points the AWS SDK at it, runs the whole workspace with
# cargo-nextest (including the tests marked #[ignore] for needing moto), and stops moto on exit.
# Extra arguments go to nextest (e.g. `tests/run.sh -p lc-core`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${LC_VENV:-$root/.venv}
req=$root/tests/requirements.txt

if [ ! -x "$venv/bin/moto_server" ] || ! grep -qxF "$(sha256sum "$req" | cut -d' ' -f1)" "$venv/.tests-req" 2>/dev/null; then
  echo "tests/run.sh: installing test tools into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  sha256sum "$req" | cut -d' ' -f1 > "$venv/.tests-req"
fi

# Headless Chromium for the login page test (Debian's package; no browser download).
if [ ! -x /usr/bin/chromium ]; then
  echo "tests/run.sh: installing chromium (Debian package)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium > /dev/null
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
mkdir -p target
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > target/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$port/moto-api/data.json" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then echo "moto_server died:"; cat target/moto.log; exit 1; fi
  sleep 0.2
done
curl -fs "http://127.0.0.1:$port/moto-api/data.json" > /dev/null || { echo "moto_server did not start"; cat target/moto.log; exit 1; }

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN || true

# With no arguments: the whole workspace. Arguments replace that selection (e.g. -p lc-core).
if [ $# -eq 0 ]; then set -- --workspace; fi
cargo nextest run --run-ignored all --no-fail-fast "$@"
