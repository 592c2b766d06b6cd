#!/usr/bin/env bash
# Cold start of every Lambda binary beside a hello-world lambda_runtime binary (see README.md).
# Builds the release binaries once (one `cargo build --release`, so the functions and the
# hello reference share the profile, dependency versions and features), then runs `coldstart`.
# Arguments go to `coldstart` (e.g. --runs 30, --secrets-manager, or function names).
# Only 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$(date +%s)
target="${CARGO_TARGET_DIR:-$PWD/target}"

pkgs=(-p lc-webhook -p lc-events -p lc-sender -p lc-deadline -p lc-coldstart)
names=(webhook events sender deadline)
if cargo build --release "${pkgs[@]}" -p lc-login; then
  names+=(login)
else
  echo "note: lc-login does not build; measuring without login" >&2
  cargo build --release "${pkgs[@]}"
fi
echo "# release build: $(( $(date +%s) - t0 ))s" >&2

# Function names on the command line replace the default list (a value after a flag is no name).
has_names=0; prev=""
for a in "$@"; do
  if [[ "$a" != -* && ! "$prev" =~ ^--(runs|timeout-ms|hello|bin-dir)$ ]]; then has_names=1; fi
  prev="$a"
done
[ "$has_names" = 1 ] && names=()
status=0
"$target/release/coldstart" --bin-dir "$target/release" "$@" "${names[@]}" || status=$?
echo "# coldstart total: $(( $(date +%s) - t0 ))s" >&2
exit $status
