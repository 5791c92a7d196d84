#!/usr/bin/env bash
# Builds netopeer2 on sysrepo (libyang, libnetconf2, sysrepo, netopeer2) into a cached prefix and
# the matching Python bindings (libyang, sysrepo) into the project venv. Idempotent: with the
# cache in place a second run only checks it.
#
# Sources: ../shared/third-party/netopeer2-stack (beside the repository) when present, otherwise
# the same tags from the projects' GitHub repositories. Either way the extracted tree must match
# the tree hash recorded in scripts/netopeer2-stack.sha256 (a download may differ byte for byte
# from the shared tarball, its files may not).
#
# Prints the prefix on the last line of stdout; with --check it builds nothing and exits 3 when
# the prefix or the bindings are missing. Environment:
#   ZEROTOUCH_NETOPEER2_SRC     folder with the four tarballs (default ../shared/third-party/...)
#   ZEROTOUCH_NETOPEER2_CACHE   cache root (default ${XDG_CACHE_HOME:-~/.cache}/zerotouch)
#   ZEROTOUCH_NETOPEER2_VENV    venv for the bindings (default .venv in the repository; "-" skips)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUMS="$ROOT/scripts/netopeer2-stack.sha256"
SRC=${ZEROTOUCH_NETOPEER2_SRC:-$ROOT/../shared/third-party/netopeer2-stack}
CACHE=${ZEROTOUCH_NETOPEER2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zerotouch}
VENV=${ZEROTOUCH_NETOPEER2_VENV:-$ROOT/.venv}
PY_LIBYANG=libyang==3.3.0
PY_SYSREPO=sysrepo==1.7.6

# Build order; each project's tag (the GitHub archive URL is derived from it).
PROJECTS=(libyang libnetconf2 sysrepo netopeer2)
declare -A TAG=([libyang]=v3.13.6 [libnetconf2]=v3.7.10 [sysrepo]=v3.7.11 [netopeer2]=v2.4.5)
DEBIAN_DEPS=(build-essential cmake pkg-config libpcre2-dev libssh-dev libssl-dev
    libcurl4-openssl-dev libxxhash-dev libpam0g-dev)

log() { echo "netopeer2-stack: $*" >&2; }
die() { log "$*"; exit 1; }

# The cache key covers the recorded trees and BUILD_REVISION (raise it when a build option
# below changes), so a new tag or option builds a fresh prefix.
BUILD_REVISION=1
KEY=$({ cat "$SUMS"; echo "$BUILD_REVISION"; } | sha256sum | cut -c1-16)
PREFIX="$CACHE/netopeer2-$KEY"
STAMP="$PREFIX/.complete"
PY_STAMP=""
[[ $VENV != - ]] && PY_STAMP="$VENV/.netopeer2-$KEY"

# Tree hash of a folder: every file's path, executable bit and SHA-256 (symlinks: their
# target), sorted, hashed once more.
tree_hash() {
    (cd "$1" && find . \( -type f -o -type l \) -print0 | LC_ALL=C sort -z |
        while IFS= read -r -d '' f; do
            if [[ -L $f ]]; then
                printf 'l %s %s\n' "$f" "$(readlink "$f")"
            else
                x=-; [[ -x $f ]] && x=x
                printf '%s %s %s\n' "$x" "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
            fi
        done) | sha256sum | cut -d' ' -f1
}

install_debian_deps() {
    local missing=()
    for pkg in "${DEBIAN_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        die "missing Debian packages: ${missing[*]} (install them as root)"
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Extracts project $1 into folder $2 (top folder stripped) and checks its tree hash.
fetch() {
    local name=$1 dest=$2 tag=${TAG[$1]} tarball
    mkdir -p "$dest"
    if [[ -f $SRC/$name-$tag.tar.gz ]]; then
        tarball="$SRC/$name-$tag.tar.gz"
    else
        tarball="$dest.tar.gz"
        log "downloading $name $tag from GitHub"
        curl -fsSL --retry 3 -o "$tarball" \
            "https://github.com/CESNET/$name/archive/refs/tags/$tag.tar.gz"
    fi
    tar -xzf "$tarball" -C "$dest" --strip-components=1
    local want got
    want=$(awk -v n="$name-$tag" '$2 == n {print $1}' "$SUMS")
    got=$(tree_hash "$dest")
    [[ -n $want ]] || die "no tree hash recorded for $name-$tag in $SUMS"
    [[ $got == "$want" ]] || die "$name-$tag: extracted tree hash $got, expected $want"
}

build_prefix() {
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    # every source is checked before anything is installed or built
    for name in "${PROJECTS[@]}"; do
        fetch "$name" "$work/$name"
    done
    install_debian_deps
    rm -rf "$PREFIX"
    mkdir -p "$PREFIX"
    local common=(-DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_PREFIX_PATH="$PREFIX"
        -DCMAKE_INSTALL_RPATH="$PREFIX/lib" -DCMAKE_INSTALL_LIBDIR=lib
        -DCMAKE_BUILD_TYPE=Release -DENABLE_TESTS=OFF)
    # Per-project options: sysrepo's default repository and netopeer2's runtime folders stay in
    # the prefix; netopeer2's module setup runs per repository (tests/support/netopeer2.py),
    # not at install time.
    declare -A extra=(
        [libyang]=""
        [libnetconf2]=""
        [sysrepo]="-DREPO_PATH=$PREFIX/var/sysrepo -DSHM_DIR=/dev/shm"
        [netopeer2]="-DSYSREPO_SETUP=OFF -DPIDFILE_PREFIX=$PREFIX/var/run
            -DSERVER_DIR=$PREFIX/var/netopeer2 -DBUILD_CLI=OFF"
    )
    for name in "${PROJECTS[@]}"; do
        log "building $name ${TAG[$name]}"
        # shellcheck disable=SC2086
        cmake -S "$work/$name" -B "$work/$name/build" "${common[@]}" ${extra[$name]} \
            -DCMAKE_INSTALL_SYSCONFDIR="$PREFIX/etc" >"$work/$name.log" 2>&1 ||
            { tail -30 "$work/$name.log" >&2; die "cmake of $name failed"; }
        cmake --build "$work/$name/build" -j "$(nproc)" >>"$work/$name.log" 2>&1 ||
            { tail -30 "$work/$name.log" >&2; die "build of $name failed"; }
        cmake --install "$work/$name/build" >>"$work/$name.log" 2>&1 ||
            { tail -30 "$work/$name.log" >&2; die "install of $name failed"; }
    done
    mkdir -p "$PREFIX/var/run" "$PREFIX/var/netopeer2" "$PREFIX/var/sysrepo"
    touch "$STAMP"
}

build_bindings() {
    [[ -x $VENV/bin/python ]] || die "no venv at $VENV (run make venv first)"
    log "building Python bindings $PY_LIBYANG $PY_SYSREPO against $PREFIX"
    # --no-binary and --no-cache-dir: a wheel built against another libyang would link it.
    LIBYANG_HEADERS="$PREFIX/include" LIBYANG_LIBRARIES="$PREFIX/lib" \
        LIBYANG_EXTRA_LDFLAGS="-Wl,-rpath,$PREFIX/lib" \
        SYSREPO_HEADERS="$PREFIX/include" SYSREPO_LIBRARIES="$PREFIX/lib" \
        SYSREPO_EXTRA_LDFLAGS="-Wl,-rpath,$PREFIX/lib" \
        "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" \
        --no-binary libyang,sysrepo --no-cache-dir \
        --force-reinstall "$PY_LIBYANG" "$PY_SYSREPO"
    "$VENV/bin/python" -c 'import libyang, sysrepo' || die "the bindings do not import"
    rm -f "$VENV"/.netopeer2-*
    touch "$PY_STAMP"
}

if [[ ${1:-} == --check ]]; then
    [[ -f $STAMP ]] || { log "not built: $PREFIX"; exit 3; }
    [[ -z $PY_STAMP || -f $PY_STAMP ]] || { log "bindings not built into $VENV"; exit 3; }
elif [[ ! -f $STAMP ]]; then
    build_prefix
fi
if [[ ${1:-} != --check && -n $PY_STAMP && ! -f $PY_STAMP ]]; then
    build_bindings
fi
echo "$PREFIX"
