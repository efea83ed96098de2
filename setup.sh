#!/usr/bin/env bash
# Set up face_health on a fresh Debian/Ubuntu machine: system libraries for headless
# rendering (EGL + Mesa), a virtual environment in .venv, and the project with its dev tools,
# every package at the version requirements.lock pins (scripts/update_lock.sh rewrites it).
# Safe to run again: every step is skipped or quick when already done.
set -euo pipefail
cd "$(dirname "$0")"

packages=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[ -x .venv/bin/python ] || "$python" -m venv .venv
# The lock as constraints: pyproject.toml says what the project needs, the lock which version
# of everything (transitive dependencies, pip itself) gets installed.
.venv/bin/python -m pip install -q -c requirements.lock --upgrade pip
.venv/bin/python -m pip install -q -c requirements.lock -e ".[dev]"
echo "face_health is set up in .venv"
