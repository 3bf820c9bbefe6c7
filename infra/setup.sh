#!/usr/bin/env bash
# Installs everything the platform needs on a fresh Debian machine, idempotently:
#   1. system packages: PostgreSQL, Redis, a JDK, Maven, Prometheus, Chromium and its driver (apt, when missing)
#   2. a virtualenv in .venv with the project and its pinned dependencies (pip)
#   3. the Spark (Delta, Kafka source) and Kafka broker jars (Maven Central, once)
# Re-running it skips every step that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
log() { printf '[setup] %s\n' "$*"; }

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v java >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_apt+=(maven)
ldconfig -p 2>/dev/null | grep -q libgomp.so.1 || need_apt+=(libgomp1)  # LightGBM's OpenMP runtime
command -v prometheus >/dev/null || need_apt+=(prometheus)          # the metrics server (and promtool)
command -v chromium >/dev/null || need_apt+=(chromium)              # the live page's browser test
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v wrk >/dev/null || need_apt+=(wrk)                        # the API benchmark's load generator
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing system packages: ${need_apt[*]}; run as root or install them with apt-get"; exit 1
  fi
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's packages try to start their services; the platform runs its own instances
  command -v service >/dev/null && { service redis-server stop >/dev/null 2>&1 || true; }
  command -v service >/dev/null && { service prometheus stop >/dev/null 2>&1 || true; }
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV ($($PYTHON --version))"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  log "installing Python dependencies (first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q --progress-bar off -e ".[dev]"
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi

log "fetching JVM jars (once)"
"$VENV/bin/python" -m infra fetch-jars
log "done"
