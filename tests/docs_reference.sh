#!/usr/bin/env bash
# The README's configuration reference is exactly what predbridged --config-reference prints.
set -euo pipefail
bin=${1:?predbridged binary} readme=${2:?README.md}
missing=0
while IFS= read -r line; do
  if ! grep -qxF -- "$line" "$readme"; then
    echo "README.md lacks: $line"
    missing=$((missing + 1))
  fi
done < <("$bin" --config-reference)
lines=$("$bin" --config-reference | wc -l)
echo "docs: $((lines - missing)) passed, $missing failed"
[ "$missing" -eq 0 ]
