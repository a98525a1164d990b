#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian machine:
# Debian packages (when run as root), Python 3.13, a venv in .venv, pinned packages.
# Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# s6/execline: the s6 service test; age: interoperability; the rest: real servers for the
# location tests (OpenSSH for SFTP, Samba for SMB, Apache and nginx for WebDAV); chromium: the
# panel tests in a real browser.
APT_PACKAGES=(s6 execline age openssh-server openssh-client samba smbclient apache2 apache2-utils nginx
  libnginx-mod-http-dav-ext chromium)

install_debian_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages ${missing[*]}; run as root or install them" >&2
    return 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

find_python313() {
  local v
  if command -v pyenv >/dev/null 2>&1; then
    v=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -V | tail -n 1 || true)
    if [ -n "$v" ] && [ -x "$(pyenv root)/versions/$v/bin/python3.13" ]; then
      echo "$(pyenv root)/versions/$v/bin/python3.13"; return 0
    fi
  fi
  for c in /usr/bin/python3.13 /usr/local/bin/python3.13; do
    [ -x "$c" ] && { echo "$c"; return 0; }
  done
  if [ "$(id -u)" -eq 0 ] && apt-cache policy python3.13 2>/dev/null | grep -q Candidate:.*[0-9]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3.13 python3.13-venv >&2
    echo /usr/bin/python3.13; return 0
  fi
  return 1
}

# pip's output is kept in a log and shown only when it fails.
pip_quiet() {
  local log
  log=$(mktemp)
  if ! .venv/bin/python -m pip --disable-pip-version-check -q "$@" >"$log" 2>&1; then
    grep -v "is ignored" "$log" >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
}

install_debian_packages
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
  PY=$(find_python313) || { echo "setup: no Python 3.13 found (pyenv or /usr/bin/python3.13)" >&2; exit 1; }
  rm -rf .venv
  "$PY" -m venv .venv
  pip_quiet install -U pip
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip_quiet install -r requirements-dev.txt
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
fi
