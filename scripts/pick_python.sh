#!/usr/bin/env bash
# Print the newest Python 3.12+ on this machine, or the newest python3 when there is none.
# pyenv's python3.12/python3.13 shims can fail with "command not found" while the interpreter
# itself is installed, so every candidate is run before it is trusted.
set -u
candidates=()
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for dir in "$root"/versions/*/; do
    for exe in "${dir}bin/python3" "${dir}bin/python"; do
      [ -x "$exe" ] && candidates+=("$exe") && break
    done
  done
fi
for name in python3.14 python3.13 python3.12 python3; do
  p=$(command -v "$name" 2>/dev/null) && candidates+=("$p")
done
best=""; best_ver=0
for exe in "${candidates[@]}"; do
  ver=$("$exe" -c 'import sys; print(sys.version_info[0]*100 + sys.version_info[1])' 2>/dev/null) || continue
  [ "$ver" -ge 311 ] || continue
  if [ "$ver" -gt "$best_ver" ]; then best=$exe; best_ver=$ver; fi
done
[ -n "$best" ] || { echo "no Python 3.11+ found" >&2; exit 1; }
if [ "${1:-}" = "--3.11" ]; then
  # The second supported environment: Debian's Python 3.11.
  for exe in /usr/bin/python3.11 "${candidates[@]}"; do
    ver=$("$exe" -c 'import sys; print(sys.version_info[:2] == (3, 11))' 2>/dev/null) || continue
    [ "$ver" = True ] && { echo "$exe"; exit 0; }
  done
  echo "no Python 3.11 found" >&2; exit 1
fi
echo "$best"
