#!/usr/bin/env bash
# Make headless Chromium usable by the review page tests. Idempotent: safe to run any number of times.
#
# Installs Debian's chromium (and chromium-driver, for Selenium users) when chromium is missing,
# checks that it starts headless, and prints the executable's path on stdout. Playwright drives
# this executable (executable_path); its own browser download is never used. It exports nothing:
# the caller may pass the path on as AUTO_DEV_CHROMIUM.
set -euo pipefail

log() { echo "setup-browser: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

find_chromium() {
    command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true
}

path="$(find_chromium)"
if [ -z "$path" ]; then
    log "installing chromium from Debian"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq chromium chromium-driver >/dev/null
    path="$(find_chromium)"
fi
if [ -z "$path" ]; then
    log "chromium is still missing after apt-get install"
    exit 1
fi

sandbox=()
if [ "$(id -u)" = 0 ]; then sandbox=(--no-sandbox); fi
if ! version="$(timeout 60 "$path" --headless --disable-gpu "${sandbox[@]}" --version 2>/dev/null)"; then
    log "$path does not start"
    exit 1
fi
log "$version at $path"
echo "$path"
