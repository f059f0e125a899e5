#!/usr/bin/env bash
# Usage: prepare_sanity.sh HOME_DIR VENV...
# Puts the offline get-pip stand-in where each venv's ansible-test looks for its cached copy,
# for every pip version that ansible-test pins.
set -eu
home=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$home/.ansible/test/cache"
for venv in "$@"; do
  reqs=$(ls "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py)
  grep -oE "pip='[0-9.]+'" "$reqs" | grep -oE "[0-9.]+" | sort -u | while read -r ver; do
    cp "$here/get_pip_offline.py" "$home/.ansible/test/cache/get_pip_${ver//./_}.py"
  done
done
