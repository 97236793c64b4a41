#!/bin/sh
# Write the compose file's secrets, random, into a folder (default docker/secrets): the Ray cluster's token, the
# PostgreSQL password, the database URL with that password for the API replicas, and two API tokens the replicas
# store at start (MERGEFRONT_TOKEN_FILES): api_token (scope write: submit, ask/tell) and admin_token (scope admin:
# tokens, exports). `docker/secrets.sh [DIR]`; POSTGRES_HOST and POSTGRES_PORT (default postgres:5432, the compose
# service) go into the URL. A secret already in DIR is kept, so running it again changes nothing.
set -eu
dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
chmod 700 "$dir"
token() { python3 -c "import secrets; print(secrets.token_hex($1), end='')"; }
api_token() { python3 -c "import secrets; print('mf_' + secrets.token_urlsafe(32), end='')"; }
keep() { [ -s "$dir/$1" ]; }  # a secret already made stays as it is
keep ray_token || token 32 > "$dir/ray_token"
if ! keep postgres_password; then
    token 16 > "$dir/postgres_password"
    rm -f "$dir/database_url"
fi
keep database_url || printf 'postgresql+psycopg://mergefront:%s@%s:%s/mergefront' "$(cat "$dir/postgres_password")" \
    "${POSTGRES_HOST:-postgres}" "${POSTGRES_PORT:-5432}" > "$dir/database_url"
keep api_token || api_token > "$dir/api_token"
keep admin_token || api_token > "$dir/admin_token"
# the containers' own users read them; the folder keeps them from other users of the host
chmod 644 "$dir/ray_token" "$dir/postgres_password" "$dir/database_url" "$dir/api_token" "$dir/admin_token"
echo "secrets written to $dir"
