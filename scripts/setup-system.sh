#!/usr/bin/env bash
# Installs the Debian packages the tests drive as real peers, when missing. Idempotent.
set -euo pipefail

# command -> Debian package that provides it
declare -A NEEDED=(
    [openssl]=openssl
    [curl]=curl
    [pg_createcluster]=postgresql
    [netconfd]=netconfd
    [yangcli]=yangcli
    [sshd]=openssh-server
    [dnsmasq]=dnsmasq-base  # the unicast DNS-SD tests' DNS server; -base: no system service
    [chromium]=chromium  # the registrar console's browser tests (Playwright drives it)
    [softhsm2-util]=softhsm2  # PKCS#11 token for the MASA signing and domain CA key tests
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

# PostgreSQL for the storage tests and the shared-database end-to-end test: a dedicated
# cluster on a fixed loopback port, trust auth on loopback only. tests/conftest.py finds it at
# postgresql://zerotouch:zerotouch@127.0.0.1:55432/zerotouch (or $ZEROTOUCH_TEST_PG_URL).
PG_PORT=55432
PG_CLUSTER=zerotouch
pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }
if ! pg_ready; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup-system: no PostgreSQL on 127.0.0.1:$PG_PORT (run this script as root)" >&2
        exit 1
    fi
    PG_VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
    if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
        pg_createcluster --quiet -p "$PG_PORT" --start-conf=manual "$PG_VERSION" "$PG_CLUSTER" \
            -- --auth-local=trust --auth-host=trust >/dev/null
    fi
    echo "listen_addresses = '127.0.0.1'" >"/etc/postgresql/$PG_VERSION/$PG_CLUSTER/conf.d/zerotouch.conf"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
    pg_ready || { echo "setup-system: PostgreSQL did not start on port $PG_PORT" >&2; exit 1; }
fi
if [[ $(id -u) -eq 0 ]]; then
    pg_sql() { runuser -u postgres -- psql -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -tAc "$1"; }
    if [[ -z $(pg_sql "SELECT 1 FROM pg_roles WHERE rolname = 'zerotouch'") ]]; then
        pg_sql "CREATE ROLE zerotouch LOGIN PASSWORD 'zerotouch'"
    fi
    if [[ -z $(pg_sql "SELECT 1 FROM pg_database WHERE datname = 'zerotouch'") ]]; then
        pg_sql "CREATE DATABASE zerotouch OWNER zerotouch"
    fi
fi
