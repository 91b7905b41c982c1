#!/usr/bin/env bash
# Installs what the tests in a real VS Code need, offline but for Debian's packages and the npm registry:
# Debian's Chromium (driven by playwright-core), code-server 4.100.3 (VS Code 1.100 on node 20), and, as
# root, the llama-server root of the openai-backend tests (scripts/llama-server/setup.sh; without it
# those tests skip, unless TWISTED_SMC_REQUIRE_LLAMA_SERVER=1).
# Idempotent: a second run only checks. Usage: scripts/e2e-setup.sh [E2E_ROOT]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-${E2E_ROOT:-$repo/.test-artifacts/e2e}}
cs="$root/cs"
mkdir -p "$root/tmp"

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/rg ] || need+=(ripgrep)
dpkg -s libkrb5-dev >/dev/null 2>&1 || need+=(libkrb5-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "e2e-setup: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x "$cs/node_modules/.bin/code-server" ]; then
  echo "e2e-setup: installing code-server 4.100.3 into $cs (about two minutes)"
  mkdir -p "$cs"
  [ -f "$cs/package.json" ] || echo '{"name":"e2e-code-server","private":true}' > "$cs/package.json"
  # @vscode/ripgrep's install script downloads rg from GitHub: give it Debian's rg in the cache it reads.
  export TMPDIR="$root/tmp"
  cache="$TMPDIR/vscode-ripgrep-cache-1.15.11"
  mkdir -p "$cache" "$TMPDIR/rg"
  cp /usr/bin/rg "$TMPDIR/rg/rg"
  tar -czf "$cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" -C "$TMPDIR/rg" rg
  # As root: unsafe-perm for its install script; yes for node-pty's npx; Node's own headers for node-gyp.
  (cd "$cs" && npm_config_unsafe_perm=true npm_config_yes=true npm_config_nodedir=${npm_config_nodedir:-/usr} \
    npm install --no-audit --no-fund code-server@4.100.3 >/dev/null)
fi
"$cs/node_modules/.bin/code-server" --version | head -1

bash "$repo/scripts/llama-server/setup.sh" --if-possible
