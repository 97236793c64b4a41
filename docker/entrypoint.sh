#!/bin/sh
# The images' entrypoint: MERGEFRONT_X_FILE=/run/secrets/y sets MERGEFRONT_X to that file's content (unless
# MERGEFRONT_X is set), so secrets reach the settings as files, never as plain environment in a compose file.
set -eu
for var in $(env | sed -n 's/^\(MERGEFRONT_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
    eval "value=\${$var:-}"
    if [ -z "$value" ]; then
        eval "file=\${${var}_FILE}"
        value=$(cat "$file")
        export "$var=$value"
    fi
done
exec "$@"
