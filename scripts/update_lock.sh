#!/usr/bin/env bash
# Re-resolve face_health's dependencies and write requirements.lock: every package of the
# environment (transitive ones, pip and setuptools included) pinned to one version.
#
#   scripts/update_lock.sh            # after adding a dependency: keeps every existing pin
#   scripts/update_lock.sh --upgrade  # re-resolve everything at the newest allowed versions
#
# It installs the project with its dev tools into a throw-away virtual environment, with the
# machine's pip configuration (indexes, wheel folders, constraints: see STACK_FACTS.md), and
# freezes what pip chose. setup.sh installs with the lock as constraints, so every machine
# gets the same versions; commit the new lock with the change that needed it.
set -euo pipefail
cd "$(dirname "$0")/.."
constraints=()
case "${1:-}" in
  --upgrade) ;;
  "") [ -f requirements.lock ] && constraints=(-c requirements.lock) ;;
  *) echo "usage: scripts/update_lock.sh [--upgrade]" >&2; exit 2 ;;
esac
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q "${constraints[@]}" ".[dev]"
{
  echo "# face_health's locked dependencies: written by scripts/update_lock.sh, do not edit by hand."
  echo "# setup.sh installs with this file as pip constraints (pip install -c requirements.lock)."
  echo "# Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())'), $(uname -m), resolved $(date -u +%Y-%m-%d)."
  "$tmp/venv/bin/python" -m pip freeze --all --exclude face_health | LC_ALL=C sort -f
} > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) packages)"
