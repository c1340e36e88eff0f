#!/usr/bin/env bash
# Installs the services the integration tests start throwaway instances of: Debian's mosquitto
# (the MQTT bus tests) and postgresql (the Postgres ledger, later). Only what is missing is
# installed; a second run only checks. Pinned to the Debian 12 (bookworm) versions the tests
# last passed with; where the archive no longer has that version (a security update replaced
# it), the current one is installed and the script says so.
#
# It installs, it does not start: the tests start their own broker and cluster on free
# 127.0.0.1 ports (tests/integration/mosquitto.py), and never use a system instance.
# Needs Debian 12 with apt-get, as root (or with sudo).
set -euo pipefail

# package=version, as `apt-cache policy mosquitto postgresql postgresql-15` showed them.
PINS=(
  "mosquitto=2.0.11-1.2+deb12u2"
  "postgresql=15+248+deb12u2"
  "postgresql-15=15.20-0+deb12u1"
)

say() { echo "[services] $*"; }

if ! command -v apt-get >/dev/null 2>&1; then
  say "apt-get not found: install mosquitto and postgresql 15 with this system's package manager"
  exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    say "not root and no sudo: run as root to install packages"
    exit 1
  fi
fi

installed_version() {  # the installed version of package $1, or nothing
  dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null \
    | awk '$1 == "install" && $3 == "installed" { print $4 }'
}

# What each package must provide for it to count as present, whatever dpkg says.
provides() {
  case "$1" in
    mosquitto) command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] ;;
    postgresql | postgresql-15) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ;;
    *) return 1 ;;
  esac
}

missing=()
for pin in "${PINS[@]}"; do
  package=${pin%%=*}
  wanted=${pin#*=}
  have=$(installed_version "$package")
  if [ -n "$have" ] && provides "$package"; then
    if [ "$have" = "$wanted" ]; then
      say "$package $have: already installed"
    else
      say "$package $have: already installed (pinned $wanted; left as it is)"
    fi
  elif provides "$package"; then
    say "$package: provided outside apt (left as it is)"
  else
    missing+=("$pin")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  say "nothing to install"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
"${SUDO[@]}" apt-get update -qq

to_install=()
for pin in "${missing[@]}"; do
  package=${pin%%=*}
  wanted=${pin#*=}
  if apt-cache madison "$package" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' \
    | grep -qxF "$wanted"; then
    to_install+=("$pin")
  else
    candidate=$(apt-cache policy "$package" | awk '/Candidate:/ { print $2 }')
    if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
      say "$package: not in this system's apt sources (Debian 12 expected)"
      exit 1
    fi
    say "$package: pinned $wanted is no longer in the archive; installing $candidate"
    to_install+=("$package=$candidate")
  fi
done

say "apt-get install ${to_install[*]}"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${to_install[@]}"
for pin in "${to_install[@]}"; do
  package=${pin%%=*}
  say "$package $(installed_version "$package"): installed"
done
