#!/bin/sh
# Build steps of docker/Dockerfile, one per layer: `install.sh python|torch|dependencies FILE|project DIR`.
set -eu

# PIP_CA: a CA bundle to trust (a TLS-intercepting proxy's), for pip and the builds it runs
if [ -n "${PIP_CA:-}" ]; then
    export PIP_CERT="$PIP_CA"
fi

pip_install() {
    # the constraints keep the torch installed first
    /opt/mergefront/bin/pip install \
        $([ -f /opt/mergefront/constraints.txt ] && echo "--constraint /opt/mergefront/constraints.txt") "$@"
}

case "$1" in
python)
    # Python 3.11+ with venv: the base image's own, else its distribution's
    if ! python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        apt-get update
        apt-get install -y --no-install-recommends python3 python3-venv ca-certificates
        rm -rf /var/lib/apt/lists/*
    fi
    python3 -m venv /opt/mergefront
    ;;
torch)
    # from WHEELS when it has the build (pip prefers 2.13.0+cpu there to PyPI's 2.13.0), else the torch index
    if [ -n "${WHEELS:-}" ]; then
        pip_install --find-links "$WHEELS" "torch==$TORCH_VERSION"
    else
        pip_install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"
    fi
    # later steps keep exactly this torch
    /opt/mergefront/bin/python -c 'import torch; print(f"torch=={torch.__version__}")' > /opt/mergefront/constraints.txt
    ;;
dependencies)
    # the project's dependencies alone (torch is already there and satisfies its range)
    /opt/mergefront/bin/python -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$2" > /tmp/requirements.txt
    pip_install -r /tmp/requirements.txt
    rm /tmp/requirements.txt
    ;;
project)
    pip_install --no-deps "$2"
    /opt/mergefront/bin/pip check
    ;;
*)
    echo "usage: $0 python|torch|dependencies FILE|project DIR" >&2
    exit 2
    ;;
esac
