#!/usr/bin/env bash
# `make docker-smoke`: build the images, start docker/compose.yaml (PostgreSQL, a Ray head, two Ray workers, two
# API replicas), submit examples/digits.yaml through the API-only replica, wait for its front (run by the other
# replica on the Ray workers), check it, tear everything down. Prints how long each step took.
#
# Runs with Podman (CONTAINER_ENGINE=podman, the default) and podman-compose (installed into docker/.cache when
# missing). Where no image registry is reachable, the base image comes from Debian's mirror (docker/base-image.sh)
# and PostgreSQL from Debian's packages (docker/postgres.Dockerfile). Containers share the host's network
# (docker/compose.hostnet.yaml), on free ports picked here.
set -euo pipefail
cd "$(dirname "$0")/.."

engine=${CONTAINER_ENGINE:-podman}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/podman.conf}
project=mergefront-smoke-$$
# what this script needs on the host, said before anything is built (Debian: apt-get install podman runc debootstrap)
for tool in "$engine" debootstrap; do
    command -v "$tool" >/dev/null || { echo "docker-smoke: '$tool' is not installed" >&2; exit 2; }
done
if [ "$CONTAINERS_CONF" = "$PWD/docker/podman.conf" ] && ! command -v runc >/dev/null; then
    echo "docker-smoke: docker/podman.conf runs containers with runc, which is not installed (apt-get install runc)" >&2
    exit 2
fi
started=$SECONDS
step() { echo "== $(date +%T) [$((SECONDS - started))s] $*"; }

compose_tool() {
    if [ -n "${COMPOSE:-}" ]; then echo "$COMPOSE"; return; fi
    if command -v podman-compose >/dev/null; then echo podman-compose; return; fi
    if [ ! -x docker/.cache/compose/bin/podman-compose ]; then
        python3 -m venv docker/.cache/compose
        docker/.cache/compose/bin/pip install --quiet 'podman-compose>=1.6'
    fi
    echo "$PWD/docker/.cache/compose/bin/podman-compose"
}

free_ports() {  # N distinct free TCP ports on 127.0.0.1
    python3 -c 'import random, socket, sys
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
ports = []
while len(ports) < int(sys.argv[1]):
    p = random.randrange(20000, 40000)
    if free(p) and p not in ports:
        ports.append(p)
print(*ports)' "$1"
}

image_or_build() {  # IMAGE PUBLIC BUILD...: the public image if it can be pulled, else run BUILD to make IMAGE
    local image=$1 public=$2; shift 2
    if "$engine" image exists "$public" 2>/dev/null || "$engine" pull -q "$public" >/dev/null 2>&1; then
        echo "$public"
    else
        "$@" >&2
        echo "$image"
    fi
}

build_images() {
    step "base image"
    base=${BASE_IMAGE:-$(image_or_build localhost/mergefront-base:bookworm python:3.11-slim-bookworm \
        docker/base-image.sh)}
    local args=(--network host --build-arg "BASE_IMAGE=$base")
    # a local folder of torch wheels (this machine's CPU build), and the host's CA bundle for pip behind a proxy
    local wheels=${TORCH_WHEELS:-/opt/wheels}
    if compgen -G "$wheels/torch-*.whl" >/dev/null; then
        args+=(-v "$wheels:/wheels:ro" --build-arg WHEELS=/wheels)
    fi
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        args+=(-v /etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro --build-arg PIP_CA=/host-ca.crt)
    fi
    step "mergefront image (base $base)"
    nice -n 10 "$engine" build -q "${args[@]}" -f docker/Dockerfile -t "$MERGEFRONT_IMAGE" . >/dev/null
    step "postgres image"
    POSTGRES_IMAGE=${POSTGRES_IMAGE:-$(image_or_build localhost/mergefront-postgres:bookworm postgres:16-bookworm \
        nice -n 10 "$engine" build -q --network host --build-arg "BASE_IMAGE=$base" \
        -f docker/postgres.Dockerfile -t localhost/mergefront-postgres:bookworm .)}
    export POSTGRES_IMAGE
}

write_secrets() {
    secrets=$(mktemp -d)
    POSTGRES_HOST=127.0.0.1 docker/secrets.sh "$secrets" >/dev/null
    export MERGEFRONT_SECRETS=$secrets
}

container() { "$engine" ps -a --format '{{.Names}}' --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" | head -n 1; }

wait_healthy() {  # run each service's health check until it passes (Podman runs none by itself without systemd)
    for service in "$@"; do
        local name deadline=$((SECONDS + 300))
        name=$(container "$service")
        until "$engine" healthcheck run "$name" >/dev/null 2>&1; do
            [ $SECONDS -lt $deadline ] || { echo "$service is not healthy" >&2; "$engine" logs --tail 40 "$name"; exit 1; }
            sleep 2
        done
        step "$service healthy"
    done
}

compose() { "$tool" -p "$project" -f docker/compose.yaml -f docker/compose.hostnet.yaml "$@"; }

teardown() {
    local status=$?
    if [ $status -ne 0 ] && [ -n "${tool:-}" ]; then
        for service in api api-only ray-head ray-worker migrate postgres; do
            name=$(container "$service" || true)
            [ -n "$name" ] && { echo "--- $service"; "$engine" logs --tail 30 "$name" 2>&1 || true; }
        done
    fi
    # the containers with their anonymous volumes (each one's home), then the named volumes
    "$engine" ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r "$engine" rm -f -v >/dev/null 2>&1
    [ -n "${tool:-}" ] && compose down -v -t 5 >/dev/null 2>&1 || true
    [ -n "${secrets:-}" ] && rm -rf "$secrets"
    echo "docker-smoke: $([ $status -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started))s"
    exit $status
}
trap teardown EXIT
trap 'exit 130' INT TERM  # through teardown, as a failure

export MERGEFRONT_IMAGE=${MERGEFRONT_IMAGE:-localhost/mergefront:cpu}
tool=$(compose_tool)
build_images
read -r RAY_PORT RAY_DASHBOARD_PORT POSTGRES_PORT API_PORT API_ONLY_PORT <<< "$(free_ports 5)"
export RAY_PORT RAY_DASHBOARD_PORT POSTGRES_PORT API_PORT API_ONLY_PORT RAY_HEAD_HOST=127.0.0.1
export RAY_WORKER_CPUS=1  # one CPU per worker node: the job's two workers need both nodes
write_secrets

step "start postgres and the ray head"
compose up -d --no-build postgres ray-head >/dev/null
wait_healthy postgres ray-head
step "migrate"
compose up -d --no-build --no-deps migrate >/dev/null
[ "$("$engine" wait "$(container migrate)")" = 0 ] || { "$engine" logs "$(container migrate)"; exit 1; }
step "start two ray workers and the two API replicas"
compose up -d --no-build --no-deps --scale ray-worker=2 ray-worker api api-only >/dev/null
wait_healthy api api-only

step "the write token the replicas stored from its secret file"
MERGEFRONT_TOKEN=$(cat "$secrets/api_token")
export MERGEFRONT_TOKEN
step "submit examples/digits.yaml to the API-only replica"
submitted=$SECONDS
# progress on stderr: its last line only, said once the job ends
timeout "${SMOKE_JOB_TIMEOUT:-1800}" .venv/bin/mergefront submit examples/digits.yaml \
    --url "http://127.0.0.1:$API_ONLY_PORT" --wait 2> >(tr '\r' '\n' | tail -n 3 >&2)
step "job done in $((SECONDS - submitted))s; checking it through both replicas"
.venv/bin/python docker/smoke_check.py "http://127.0.0.1:$API_PORT" "http://127.0.0.1:$API_ONLY_PORT" "$secrets/admin_token"
