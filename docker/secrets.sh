#!/bin/sh
# Write the compose file's secrets, random, into a folder (default docker/secrets): the Ray cluster's token, the
# PostgreSQL password, and the database URL with that password for the API replicas. `docker/secrets.sh [DIR]`;
# POSTGRES_HOST and POSTGRES_PORT (default postgres:5432, the compose service) go into the URL.
set -eu
dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
chmod 700 "$dir"
token() { python3 -c "import secrets; print(secrets.token_hex($1), end='')"; }
password=$(token 16)
token 32 > "$dir/ray_token"
printf '%s' "$password" > "$dir/postgres_password"
printf 'postgresql+psycopg://mergefront:%s@%s:%s/mergefront' "$password" "${POSTGRES_HOST:-postgres}" \
    "${POSTGRES_PORT:-5432}" > "$dir/database_url"
# the containers' own users read them; the folder keeps them from other users of the host
chmod 644 "$dir/ray_token" "$dir/postgres_password" "$dir/database_url"
echo "secrets written to $dir"
