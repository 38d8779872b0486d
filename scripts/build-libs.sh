#!/usr/bin/env bash
# Build zlib, lz4 and xz-utils' liblzma from Debian's source packages at several
# optimization levels and DWARF versions: real code nobody here wrote, for the
# resolver's differential suite (tests/integration/test_resolver_libs.py,
# benchmarks/bench_resolver_libs.py).  Only the shared libraries are built (no
# tools, docs or tests): about a minute on 2 cores.  Cached outside the clone:
#
#   /var/cache/fleettrace/libs-<LIBS_VERSION>/<lib>-<variant>/lib<lib>.so   (not stripped)
#   /var/cache/fleettrace/libs-<LIBS_VERSION>/src/<lib>/                    (sources, headers)
#
# Variants: O0 (-O0 -gdwarf-5), O0dw4, O2 (-O2 -gdwarf-5), O2dw4; the other flags are
# Debian's (dpkg-buildflags).  The last line printed is the cache directory.
# Needs root the first time (apt-get source, a deb-src entry).  FLEETTRACE_LIBS_CACHE
# overrides /var/cache/fleettrace.
set -euo pipefail

LIBS_VERSION=1          # bump when the build changes: a new directory is built
CACHE=${FLEETTRACE_LIBS_CACHE:-/var/cache/fleettrace}
ROOT="$CACHE/libs-$LIBS_VERSION"
PACKAGES=(zlib lz4 xz-utils)
declare -A VARIANTS=([O0]="-O0 -gdwarf-5" [O0dw4]="-O0 -gdwarf-4" [O2]="-O2 -gdwarf-5" [O2dw4]="-O2 -gdwarf-4")
log() { echo "build-libs: $*" >&2; }
# shellcheck source=scripts/deb-src.sh
. "$(dirname "$0")/deb-src.sh"

mkdir -p "$CACHE"
exec 9>"$CACHE/.libs-build.lock"       # parallel test runs share the cache
flock 9
# Programs linked with -L<variant dir> ask for the soname: link it to the build there.
soname_links() {
  local v
  for v in O0 O0dw4 O2 O2dw4; do
    ln -sfn libz.so "$ROOT/zlib-$v/libz.so.1"
    ln -sfn liblz4.so "$ROOT/lz4-$v/liblz4.so.1"
    ln -sfn liblzma.so "$ROOT/xz-$v/liblzma.so.5"
  done
}
if [ -f "$ROOT/.complete" ]; then
  [ -e "$ROOT/xz-O2dw4/liblzma.so.5" ] || soname_links
  echo "$ROOT"
  exit 0
fi

ensure_deb_src zlib

rm -rf "$ROOT"
work=$(mktemp -d "$CACHE/.libs.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cd "$work/src"
log "fetching ${PACKAGES[*]} sources"
apt-get source -qq "${PACKAGES[@]}" >fetch.log 2>&1 || { cat fetch.log >&2; exit 1; }
mv zlib-*/ zlib; mv lz4-*/ lz4; mv xz-utils-*/ xz
rm -f ./*.tar.* ./*.dsc ./*.asc fetch.log

# Debian's flags without the prefix map (probe_info shows source lines from these paths).
base_cflags=$(dpkg-buildflags --get CFLAGS | sed -e 's/-O[0-9s]//g' -e 's/-g\b//g' -e 's/-ffile-prefix-map=[^ ]*//g')
cppflags=$(dpkg-buildflags --get CPPFLAGS)
src=$ROOT/src           # the final place: DW_AT_comp_dir and file names point there

compile() {      # $1 out dir, $2 flags, then sources: compiled nproc at a time
  local out=$1 flags=$2 c
  shift 2
  for c in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n; done
    # shellcheck disable=SC2086 # flags are word lists
    gcc -c -fPIC $flags $base_cflags $cppflags -o "$out/$(basename "$c" .c).o" "$c" &
  done
  wait
}
build_zlib() {   # $1 out dir, $2 flags
  local c sources=()
  for c in adler32 compress crc32 deflate gzclose gzlib gzread gzwrite infback inffast inflate inftrees \
           trees uncompr zutil; do
    sources+=("$src/zlib/$c.c")
  done
  compile "$1" "$2 -DHAVE_UNISTD_H -DHAVE_STDARG_H -D_LARGEFILE64_SOURCE=1" "${sources[@]}"
  gcc -shared -Wl,-soname,libz.so.1 -o "$1/libz.so" "$1"/*.o
}
build_lz4() {
  compile "$1" "$2" "$src/lz4/lib/lz4.c" "$src/lz4/lib/lz4hc.c" "$src/lz4/lib/lz4frame.c" "$src/lz4/lib/xxhash.c"
  gcc -shared -Wl,-soname,liblz4.so.1 -o "$1/liblz4.so" "$1"/*.o
}
build_xz() {     # liblzma only, in a copy of the configured tree per variant
  cp -a "$src/xz" "$1/tree"
  (cd "$1/tree" && ./configure -q --disable-xz --disable-xzdec --disable-lzmadec --disable-lzmainfo \
     --disable-lzma-links --disable-scripts --disable-doc --disable-nls --disable-static \
     CFLAGS="$2 $base_cflags" CPPFLAGS="$cppflags" >configure.log 2>&1 \
   && make -s -j"$(nproc)" -C src/liblzma >make.log 2>&1) || { tail -n 30 "$1"/tree/*.log >&2; return 1; }
  cp -L "$1/tree/src/liblzma/.libs/liblzma.so" "$1/liblzma.so"
}

# Build where the result will live, so the DWARF names the cached sources.
mkdir -p "$ROOT"
mv "$work/src" "$src"
for lib in zlib lz4 xz; do
  for variant in O0 O0dw4 O2 O2dw4; do
    out="$ROOT/$lib-$variant"
    log "building $lib $variant (${VARIANTS[$variant]})"
    mkdir -p "$out"
    "build_$lib" "$out" "${VARIANTS[$variant]}"
  done
done
soname_links
touch "$ROOT/.complete"
log "built in $ROOT"
echo "$ROOT"
