#!/usr/bin/env bash
# Build real libraries from Debian's source packages at several optimization levels,
# DWARF versions and languages: code nobody here wrote, for the resolver's
# differential suite (tests/integration/test_resolver_libs.py,
# benchmarks/bench_resolver_libs.py) and its speed benchmarks.  Only the shared
# libraries are built (no tools, docs or tests).  Cached outside the clone:
#
#   /var/cache/fleettrace/libs-<LIBS_VERSION>/<lib>-<variant>/lib<lib>.so   (not stripped)
#   /var/cache/fleettrace/libs-<LIBS_VERSION>/src/<lib>/                    (sources, headers)
#
#   usage: build-libs.sh [SET ...]      (default: every set; each is built once and cached)
#
# Sets (each cached on its own, so adding one never rebuilds the others):
#   c       zlib, lz4, xz-utils' liblzma at O0 (-O0 -gdwarf-5), O0dw4, O2 (-O2 -gdwarf-5), O2dw4  (~2 min)
#   zstd    libzstd at O2 and O3 (its own default level), legacy formats v05-v07 included       (~2 min)
#   sqlite3 the sqlite3 amalgamation (one 8 MB compile unit) at O2                               (~2 min)
#   cxx     C++: snappy and leveldb at O2 with CMake, as Debian builds them                      (~4 min)
#   lto     zlib at O2lto (-O2 -flto=auto -ffat-lto-objects, Debian's optimize=+lto)           (~1 min)
# The other flags are Debian's (dpkg-buildflags).  The last line printed is the cache
# directory.  Needs root the first time (apt-get source, a deb-src entry).
# FLEETTRACE_LIBS_CACHE overrides /var/cache/fleettrace.
set -euo pipefail

LIBS_VERSION=1          # bump when a set's build changes: a new directory is built
CACHE=${FLEETTRACE_LIBS_CACHE:-/var/cache/fleettrace}
ROOT="$CACHE/libs-$LIBS_VERSION"
ALL_SETS=(c zstd sqlite3 cxx lto)
declare -A SOURCES=([c]="zlib lz4 xz-utils" [zstd]="libzstd" [sqlite3]="sqlite3" [cxx]="snappy leveldb" [lto]="zlib")
declare -A VARIANTS=([O0]="-O0 -gdwarf-5" [O0dw4]="-O0 -gdwarf-4" [O2]="-O2 -gdwarf-5" [O2dw4]="-O2 -gdwarf-4"
                     [O3]="-O3 -gdwarf-5" [O2lto]="-O2 -gdwarf-5 -flto=auto -ffat-lto-objects")
log() { echo "build-libs: $*" >&2; }
# shellcheck source=scripts/deb-src.sh
. "$(dirname "$0")/deb-src.sh"

sets=("$@")
[ "${#sets[@]}" -gt 0 ] || sets=("${ALL_SETS[@]}")
for set in "${sets[@]}"; do
  [ -n "${SOURCES[$set]:-}" ] || { log "unknown set '$set' (sets: ${ALL_SETS[*]})"; exit 2; }
done

# The c set was the only one before sets existed: its marker keeps that name.
marker() { if [ "$1" = c ]; then echo "$ROOT/.complete"; else echo "$ROOT/.complete-$1"; fi; }

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
if [ -f "$ROOT/.complete" ] && [ ! -e "$ROOT/xz-O2dw4/liblzma.so.5" ]; then soname_links; fi
todo=()
for set in "${sets[@]}"; do
  [ -f "$(marker "$set")" ] || todo+=("$set")
done
if [ "${#todo[@]}" -eq 0 ]; then
  echo "$ROOT"
  exit 0
fi

ensure_deb_src zlib

work=$(mktemp -d "$CACHE/.libs.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$ROOT/src           # the final place: DW_AT_comp_dir and file names point there
mkdir -p "$src"

# fetch PACKAGE...: unpack each source package not fetched yet as $src/<short name>
declare -A SHORT=([zlib]=zlib [lz4]=lz4 [xz-utils]=xz [libzstd]=zstd [sqlite3]=sqlite3 [snappy]=snappy
                  [leveldb]=leveldb)
fetch() {
  local package wanted=()
  for package in "$@"; do
    [ -d "$src/${SHORT[$package]}" ] || wanted+=("$package")
  done
  [ "${#wanted[@]}" -gt 0 ] || return 0
  log "fetching ${wanted[*]} sources"
  mkdir -p "$work/fetch"
  (cd "$work/fetch" && apt-get source -qq "${wanted[@]}" >fetch.log 2>&1) || { cat "$work/fetch/fetch.log" >&2; exit 1; }
  for package in "${wanted[@]}"; do
    # Build where the result will live, so the DWARF names the cached sources.
    mv "$work/fetch/$package"-*/ "$src/${SHORT[$package]}"
  done
  rm -rf "$work/fetch"
}

# Debian's flags without the optimization, -g and the prefix map (probe_info shows source lines
# from these paths).
debian_flags() { dpkg-buildflags --get "$1" | sed -e 's/-O[0-9s]//g' -e 's/-g\b//g' -e 's/-ffile-prefix-map=[^ ]*//g'; }
base_cflags=$(debian_flags CFLAGS)
base_cxxflags=$(debian_flags CXXFLAGS)
cppflags=$(dpkg-buildflags --get CPPFLAGS)

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
  # shellcheck disable=SC2086 # flags are word lists (the LTO link needs them: code is generated here)
  gcc -shared $2 -Wl,-soname,libz.so.1 -o "$1/libz.so" "$1"/*.o
  ln -sfn libz.so "$1/libz.so.1"
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
build_zstd() {   # libzstd with its own Makefile (it adds its defines to the flags from the environment)
  cp -a "$src/zstd" "$1/tree"
  CFLAGS="$2 $base_cflags" CPPFLAGS="$cppflags" make -s -j"$(nproc)" -C "$1/tree/lib" libzstd \
    >"$1/make.log" 2>&1 || { tail -n 30 "$1/make.log" >&2; return 1; }
  cp -L "$1/tree/lib/libzstd.so" "$1/libzstd.so"
  ln -sfn libzstd.so "$1/libzstd.so.1"
}
sqlite3_amalgamation() {     # sqlite3.c, made once by SQLite's own tool (tclsh) in the source tree
  [ -f "$src/sqlite3/amalgamation/sqlite3.c" ] && return 0
  mkdir -p "$work/sqlite3-bld"
  (cd "$work/sqlite3-bld" && "$src/sqlite3/configure" -q --disable-tcl >configure.log 2>&1 \
   && make -s sqlite3.c >make.log 2>&1) || { tail -n 30 "$work"/sqlite3-bld/*.log >&2; return 1; }
  mkdir -p "$src/sqlite3/amalgamation"
  cp "$work/sqlite3-bld/sqlite3.c" "$work/sqlite3-bld/sqlite3.h" "$src/sqlite3/amalgamation/"
}
build_sqlite3() {
  sqlite3_amalgamation
  # Some of Debian's SQLITE_ENABLE_* options: more of the code is compiled in.
  compile "$1" "$2 -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_RTREE \
    -DSQLITE_ENABLE_JSON1 -DSQLITE_THREADSAFE=1" "$src/sqlite3/amalgamation/sqlite3.c"
  gcc -shared -Wl,-soname,libsqlite3.so.0 -o "$1/libsqlite3.so" "$1/sqlite3.o" -lm
  ln -sfn libsqlite3.so "$1/libsqlite3.so.0"
}
cmake_library() {   # $1 out dir, $2 flags, $3 source dir, $4 target, then CMake options
  local out=$1 flags=$2 source=$3 target=$4
  shift 4
  cmake -S "$source" -B "$out/build" -DCMAKE_BUILD_TYPE=None -DBUILD_SHARED_LIBS=ON \
    -DCMAKE_CXX_FLAGS="$flags $base_cxxflags $cppflags" -DCMAKE_C_FLAGS="$flags $base_cflags $cppflags" \
    "$@" >"$out/cmake.log" 2>&1 || { tail -n 30 "$out/cmake.log" >&2; return 1; }
  cmake --build "$out/build" -j"$(nproc)" --target "$target" >"$out/make.log" 2>&1 \
    || { tail -n 30 "$out/make.log" >&2; return 1; }
}
soname_link() {    # $1 dir, $2 library file: a link named by its soname (what programs linked with it ask for)
  local soname
  soname=$(objdump -p "$1/$2" | awk '/SONAME/ {print $2}')
  [ -z "$soname" ] || [ "$soname" = "$2" ] || ln -sfn "$2" "$1/$soname"
}
build_snappy() {
  cmake_library "$1" "$2" "$src/snappy" snappy -DSNAPPY_BUILD_TESTS=OFF -DSNAPPY_BUILD_BENCHMARKS=OFF
  cp -L "$1/build/libsnappy.so" "$1/libsnappy.so"
  soname_link "$1" libsnappy.so
}
build_leveldb() {   # Debian's soname is libleveldb.so.1d
  cmake_library "$1" "$2" "$src/leveldb" leveldb -DLEVELDB_BUILD_TESTS=OFF -DLEVELDB_BUILD_BENCHMARKS=OFF \
    -DLEVELDB_INSTALL=OFF
  cp -L "$1/build/libleveldb.so" "$1/libleveldb.so"
  soname_link "$1" libleveldb.so
}

build_set() {
  local set=$1 lib variant out libs variants
  case $set in
    c) libs="zlib lz4 xz"; variants="O0 O0dw4 O2 O2dw4" ;;
    zstd) libs=zstd; variants="O2 O3" ;;
    sqlite3) libs=sqlite3; variants=O2 ;;
    cxx) libs="snappy leveldb"; variants=O2 ;;
    lto) libs=zlib; variants=O2lto ;;
  esac
  # shellcheck disable=SC2086 # word lists
  fetch ${SOURCES[$set]}
  for lib in $libs; do
    for variant in $variants; do
      out="$ROOT/$lib-$variant"
      log "building $lib $variant (${VARIANTS[$variant]})"
      rm -rf "$out"
      mkdir -p "$out"
      "build_$lib" "$out" "${VARIANTS[$variant]}"
    done
  done
  [ "$set" != c ] || soname_links
  touch "$(marker "$set")"
}

for set in "${todo[@]}"; do
  build_set "$set"
done
log "built ${todo[*]} in $ROOT"
echo "$ROOT"
