#!/usr/bin/env bash
# Make a Docker engine and the auto-dev sandbox image available (CI and dev boxes). Idempotent:
#   1. apt-get install docker.io and debootstrap if missing;
#   2. start dockerd in the background if no engine answers (overlay2, falling back to vfs where
#      overlay is not available), without touching iptables or creating a bridge: sandbox
#      containers never have a network;
#   3. wait until `docker info` works;
#   4. build the sandbox image offline (debootstrap + docker import) if it is missing.
# Environment: AUTO_DEV_SANDBOX_IMAGE (default auto-dev-sandbox:latest), DOCKERD_LOG
# (default /var/log/dockerd.log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${AUTO_DEV_SANDBOX_IMAGE:-auto-dev-sandbox:latest}"
LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"

say() { printf '[setup-docker] %s\n' "$*"; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

wait_for_engine() {
    local seconds="$1" i
    for ((i = 0; i < seconds * 4; i++)); do
        docker info >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    return 1
}

start_dockerd() {
    local driver="$1"
    say "starting dockerd (storage driver $driver), log in $LOG"
    # setsid: the daemon must outlive this script and the CI step that ran it.
    $SUDO setsid dockerd --storage-driver="$driver" --iptables=false --bridge=none \
        >>"$LOG" 2>&1 </dev/null &
}

if docker info >/dev/null 2>&1; then
    say "Docker engine already running"
else
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        start_dockerd overlay2
        if ! wait_for_engine 30; then
            if ! pgrep -x dockerd >/dev/null 2>&1; then
                say "dockerd did not stay up with overlay2 (see $LOG); retrying with vfs"
                start_dockerd vfs
            fi
        fi
    fi
    wait_for_engine 60 || { tail -n 30 "$LOG" >&2 || true; say "the Docker engine did not come up"; exit 1; }
    say "Docker engine is up: $(docker version --format '{{.Server.Version}}')"
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "sandbox image $IMAGE present"
else
    say "building the sandbox image $IMAGE offline"
    $SUDO bash "$ROOT/auto_dev/sandbox/build_image.sh" "$IMAGE"
fi
