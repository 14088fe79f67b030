#!/usr/bin/env bash
# Debian packages the tests use: chromium (the MLflow UI browser check) and postgresql (shared studies).
# Installs only what is missing; needs root (CI runs as root). Without them those tests skip with a reason.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "system-packages: missing ${missing[*]} (install them with apt-get as root); the tests that need them will skip" >&2
  fi
fi
