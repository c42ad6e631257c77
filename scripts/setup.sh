#!/usr/bin/env bash
# Installs everything the replicator needs on a fresh Debian 12 machine, and nothing twice:
#   - Debian packages: PostgreSQL 15, MariaDB 10.11, Java 17, Maven (and iptables, iproute2, openssl for tests)
#   - Apache Kafka's jars from Maven Central (into ~/.cache/replicator, see docker/kafka/pom.xml)
#   - a virtualenv in .venv with the project and its test/dev extras
# Idempotent: a second run only checks. Needs root (or sudo) for apt-get the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# iptables and iproute2 (ss): the tests cut a process's database connections off to see it notice;
# openssl: they make a certificate authority for a broker that wants TLS.
packages=(postgresql-15 postgresql-client-15 mariadb-server mariadb-client openjdk-17-jre-headless maven
          iptables iproute2 openssl)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  # The packages' own services are not used (the devstack runs its own servers on other ports).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "Python >= 3.11 is required (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  log "creating the virtualenv in .venv"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
else
  log "virtualenv up to date"
fi

log "Kafka jars: $(.venv/bin/replicator dev fetch-kafka)"
