#!/usr/bin/env bash
# Installs the Debian packages the tests drive as real peers, when missing. Idempotent.
set -euo pipefail

# command -> Debian package that provides it
declare -A NEEDED=(
    [openssl]=openssl
    [curl]=curl
)

missing=()
for cmd in "${!NEEDED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "setup-system: missing Debian packages: ${missing[*]} (install them as root)" >&2
        exit 1
    fi
    echo "setup-system: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
