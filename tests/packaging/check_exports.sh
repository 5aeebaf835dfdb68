#!/usr/bin/env bash
# check_exports.sh: the shared library exports exactly the PB_API functions declared in the public
# headers: nothing internal leaks, nothing declared is missing (like jansson's check-exports).
# usage: check_exports.sh LIBRARY INCLUDE_DIR
set -euo pipefail
lib=$1 inc=$2
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^_' | sort -u)
declared=$(grep -hv "^#define" "$inc"/predbridge/*.h | tr '\n' ' ' | grep -oE 'PB_API [^;(]*\(' |
  sed -E 's/\($//; s/.*[ *]//' | sort -u)
bad=$(grep -v '^pb_' <<<"$exported" || true)
if [[ -n $bad ]]; then echo "exported without the pb_ prefix:"; echo "$bad"; exit 1; fi
if [[ $exported != "$declared" ]]; then
  echo "exports differ from the public headers (< exported only, > declared only):"
  diff <(echo "$exported") <(echo "$declared") || true
  exit 1
fi
echo "exports: $(wc -l <<<"$exported") pb_* symbols, all declared"
