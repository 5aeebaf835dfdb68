#!/usr/bin/env bash
# install_and_build.sh: installs the build into a temporary prefix and builds the example application
# against that installation only, with pkg-config (shared) and with find_package (shared and static).
# usage: install_and_build.sh BUILD_DIR SOURCE_DIR [SANITIZE_FLAGS]
set -euo pipefail
build=$1 src=$2 san=${3:-}
work=$build/packaging-test
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log"

for f in include/predbridge/predbridge.h include/predbridge/consumer.h; do
  [[ -f $prefix/$f ]] || { echo "not installed: $f"; exit 1; }
done
pc=$(find "$prefix" -name predbridge.pc)
cfg=$(find "$prefix" -name predbridgeConfig.cmake)
[[ -n $pc && -n $cfg ]] || { echo "pkg-config file or CMake package missing"; exit 1; }
[[ -n $(find "$prefix" -name libpredbridge.a) ]] || { echo "static library missing"; exit 1; }
[[ -n $(find "$prefix" -name 'libpredbridge.so.0') ]] || { echo "SONAME link missing"; exit 1; }

# The static archive must be self-contained: nothing of ours left undefined (only system libraries).
undef=$(nm -A "$(find "$prefix" -name libpredbridge.a)" 2>/dev/null | awk '$2=="U"{print $3}' | sort -u |
  grep -E '^(pb[a-z]*_|props_)' || true)
defined=$(nm "$(find "$prefix" -name libpredbridge.a)" 2>/dev/null | awk '$2~/^[TDBR]$/{print $3}' | sort -u)
for s in $undef; do
  grep -qx "$s" <<<"$defined" || { echo "libpredbridge.a needs $s but does not define it"; exit 1; }
done

# pkg-config, against the shared library.
export PKG_CONFIG_PATH=$(dirname "$pc")
# shellcheck disable=SC2046
cc $san -std=c11 -Wall -Werror "$src/tests/packaging/example/example.c" -o "$work/example_pkgconfig" \
  $(pkg-config --cflags --libs predbridge) -Wl,-rpath,"$(pkg-config --variable=libdir predbridge)"
"$work/example_pkgconfig"
# (ldd's output is captured first: with pipefail, `ldd | grep -q` fails whenever grep stops reading early.)
deps=$(ldd "$work/example_pkgconfig")
grep -qF "$prefix" <<<"$deps" || { echo "example_pkgconfig did not use the installed library"; exit 1; }

# find_package, shared and static.
cmake -S "$src/tests/packaging/example" -B "$work/example-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >"$work/example-configure.log"
cmake --build "$work/example-build" >"$work/example-build.log"
"$work/example-build/example_shared"
"$work/example-build/example_static"
deps=$(ldd "$work/example-build/example_static")
if grep -q libpredbridge <<<"$deps"; then
  echo "example_static is linked to the shared library"; exit 1
fi
echo "packaging: ok"
