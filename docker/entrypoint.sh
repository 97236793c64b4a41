#!/bin/sh
# The images' entrypoint.
# - MERGEFRONT_X_FILE=/run/secrets/y sets MERGEFRONT_X to that file's content (unless MERGEFRONT_X is set), so
#   secrets reach the settings as files, never as plain environment in a compose file.
# - MERGEFRONT_JOIN_RAY=true first joins the Ray cluster at RAY_ADDRESS as a node without CPUs or GPUs (extra
#   `ray start` options in RAY_START_ARGS): a Ray driver, the job runner of `mergefront serve`, talks to a raylet
#   of its own machine, and this one takes no evaluation.
set -eu
for var in $(env | sed -n 's/^\(MERGEFRONT_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
    eval "value=\${$var:-}"
    if [ -z "$value" ]; then
        eval "file=\${${var}_FILE}"
        value=$(cat "$file")
        export "$var=$value"
    fi
done
if [ "${MERGEFRONT_JOIN_RAY:-false}" = true ]; then
    # shellcheck disable=SC2086  # RAY_START_ARGS is a list of options
    ray start --address="$RAY_ADDRESS" --num-cpus=0 --num-gpus=0 --disable-usage-stats ${RAY_START_ARGS:-} >/dev/null
fi
exec "$@"
