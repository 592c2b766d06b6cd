#!/usr/bin/env bash
# Runs every test: unit, table, simulator, the AWS adapter tests against moto's server mode,
# the store race tests against dynalite, the end-to-end flows, and the login page in headless
# Chromium.
#
# It creates .venv (pinned tools from tests/requirements.txt) when missing or stale, installs
# dynalite (pinned by tests/dynalite/package-lock.json, `npm ci` into target/dynalite) when
# missing or stale, starts moto_server and dynalite (in memory) on free 127.0.0.1 ports, points
# the AWS SDK at moto and LC_DYNALITE_URL at dynalite, runs the whole workspace with
# cargo-nextest (including the tests marked #[ignore] for needing them), and stops both on exit.
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

# dynalite: a DynamoDB emulator that applies each request atomically (a lock per item), for the
# race tests (moto checks conditions without a lock). Node.js and npm come with the machine.
dyn_src=$root/tests/dynalite
dyn_dir=$root/target/dynalite
dyn_cli=$dyn_dir/node_modules/dynalite/cli.js
dyn_stamp=$(cat "$dyn_src/package.json" "$dyn_src/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ ! -f "$dyn_cli" ] || ! grep -qxF "$dyn_stamp" "$dyn_dir/.stamp" 2>/dev/null; then
  command -v npm > /dev/null || { echo "tests/run.sh: npm is needed to install dynalite"; exit 1; }
  echo "tests/run.sh: installing dynalite into $dyn_dir"
  rm -rf "$dyn_dir"
  mkdir -p "$dyn_dir"
  cp "$dyn_src/package.json" "$dyn_src/package-lock.json" "$dyn_dir/"
  # --ignore-scripts: the LevelDB binding ships prebuilt binaries; nothing is compiled.
  (cd "$dyn_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$dyn_stamp" > "$dyn_dir/.stamp"
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
port=$(free_port)
dyn_port=$(free_port)
while [ "$dyn_port" = "$port" ]; do dyn_port=$(free_port); done
mkdir -p target
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > target/moto.log 2>&1 &
moto_pid=$!
pids+=("$moto_pid")
# In memory (no --path); tables are ACTIVE at once.
node "$dyn_cli" --host 127.0.0.1 --port "$dyn_port" --createTableMs 0 --deleteTableMs 0 \
  --updateTableMs 0 > target/dynalite.log 2>&1 &
dyn_pid=$!
pids+=("$dyn_pid")

for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$port/moto-api/data.json" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then echo "moto_server died:"; cat target/moto.log; exit 1; fi
  sleep 0.2
done
curl -fs "http://127.0.0.1:$port/moto-api/data.json" > /dev/null || { echo "moto_server did not start"; cat target/moto.log; exit 1; }

# dynalite answers GET / with "healthy: ...".
for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$dyn_port/" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$dyn_pid" 2>/dev/null; then echo "dynalite died:"; cat target/dynalite.log; exit 1; fi
  sleep 0.2
done
curl -fs "http://127.0.0.1:$dyn_port/" > /dev/null || { echo "dynalite did not start"; cat target/dynalite.log; exit 1; }
export LC_DYNALITE_URL="http://127.0.0.1:$dyn_port"

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN || true

# With no arguments: the whole workspace. Arguments replace that selection (e.g. -p lc-core).
if [ $# -eq 0 ]; then set -- --workspace; fi
cargo nextest run --run-ignored all --no-fail-fast "$@"
