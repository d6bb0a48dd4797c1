#!/usr/bin/env bash
# The web UI's browser test drives Debian's chromium with playwright-core
# (playwright's own browser download cannot work here). Installs it when missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "[chromium] /usr/bin/chromium is missing: install Debian's chromium package (apt-get install chromium) and retry" >&2
  exit 1
fi
echo "[chromium] installing Debian's chromium (apt-get install chromium)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium >&2
