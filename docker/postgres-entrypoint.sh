#!/bin/sh
# Initialise an empty data folder as the official image does (a superuser POSTGRES_USER with the password in
# POSTGRES_PASSWORD_FILE, a database POSTGRES_DB, password authentication from other hosts), then run "$@".
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password=$(cat "$POSTGRES_PASSWORD_FILE")
    printf '%s' "$password" > /tmp/pwfile
    initdb --username="$POSTGRES_USER" --pwfile=/tmp/pwfile --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start >/dev/null
    createdb -p "${PGPORT:-5432}" --username="$POSTGRES_USER" "$POSTGRES_DB"
    pg_ctl -m fast -w stop >/dev/null
fi
if [ "${1:-}" = postgres ]; then
    shift
    exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
