#!/usr/bin/env bash
# Make a local PostgreSQL usable by the test suite. Idempotent: safe to run any number of times.
#
# Installs PostgreSQL from Debian when it is missing, starts the newest cluster, creates a superuser
# role for the current OS user (so peer authentication over the Unix socket works without a
# password) and the test database, then prints the URL the tests read from
# AUTO_DEV_TEST_POSTGRES_URL. It exports nothing: the caller decides what to do with the URL.
set -euo pipefail

DB_NAME="${AUTO_DEV_TEST_POSTGRES_DB:-autodev_test}"
ROLE="$(id -un)"
SOCKET_DIR=/var/run/postgresql

log() { echo "setup-postgres: $*" >&2; }

as_postgres() {
    # Run a client as the postgres OS user from a directory it can read.
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && sudo -n -u postgres -- "$@")
    fi
}

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {found = 1} END {exit !found}'; then
    log "creating cluster $VERSION/main"
    pg_createcluster "$VERSION" main >/dev/null
fi

status="$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $4}')"
if [ "$status" != "online" ]; then
    log "starting cluster $VERSION/main"
    pg_ctlcluster "$VERSION" main start || service postgresql start
fi
PORT="$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')"

for _ in $(seq 1 30); do
    if pg_isready -q -h "$SOCKET_DIR" -p "$PORT"; then
        break
    fi
    sleep 1
done
pg_isready -q -h "$SOCKET_DIR" -p "$PORT" || { log "cluster did not become ready"; exit 1; }

psql_admin() { as_postgres psql -h "$SOCKET_DIR" -p "$PORT" -d postgres -tAc "$1"; }

if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
    log "creating superuser role $ROLE"
    as_postgres createuser -h "$SOCKET_DIR" -p "$PORT" --superuser "$ROLE"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != "1" ]; then
    log "creating database $DB_NAME"
    as_postgres createdb -h "$SOCKET_DIR" -p "$PORT" -O "$ROLE" "$DB_NAME"
fi

URL="postgresql+psycopg:///$DB_NAME?host=$SOCKET_DIR"
if [ "$PORT" != "5432" ]; then
    URL="$URL&port=$PORT"
fi
echo "$URL"
