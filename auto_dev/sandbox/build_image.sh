#!/usr/bin/env bash
# Build the auto-dev sandbox image without pulling anything from a registry.
#
#   build_image.sh [IMAGE]            (default: $AUTO_DEV_SANDBOX_IMAGE or auto-dev-sandbox:latest)
#
# Steps: debootstrap a minimal Debian (minbase + python3) from the mirror apt already uses,
# strip what a sandbox must not have (setuid bits, apt caches, docs), `docker import` it as
# IMAGE-base, then a tiny Dockerfile FROM it adds the dedicated non-root user. Only Debian
# package mirrors are contacted, so this works where Docker Hub is unreachable.
#
# Environment overrides: AUTO_DEV_SUITE (bookworm), AUTO_DEV_MIRROR (read from apt's sources),
# AUTO_DEV_SANDBOX_UID (10001), AUTO_DEV_KEEP_ROOTFS=1 keeps the temporary root filesystem.
set -euo pipefail

IMAGE="${1:-${AUTO_DEV_SANDBOX_IMAGE:-auto-dev-sandbox:latest}}"
SUITE="${AUTO_DEV_SUITE:-bookworm}"
SANDBOX_UID="${AUTO_DEV_SANDBOX_UID:-10001}"

step() { printf '==> %s\n' "$*"; }
die() { printf 'build_image.sh: %s\n' "$*" >&2; exit 1; }

# IMAGE "repo:tag" -> base "repo-base:tag" (a registry port like host:5000/x has no tag after it).
if [[ "${IMAGE##*/}" == *:* ]]; then
    REPO="${IMAGE%:*}"
    TAG="${IMAGE##*:}"
else
    REPO="$IMAGE"
    TAG="latest"
fi
BASE="${REPO}-base:${TAG}"

# The first deb URI apt uses for $SUITE, from one-line sources.list or deb822 *.sources files.
detect_mirror() {
    local f uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        uri="$(awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f")"
        [[ -n "$uri" ]] && { echo "$uri"; return 0; }
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri="$(awk -v suite="$SUITE" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = ""; suites = ""; uris = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"  { $1 = ""; types = substr($0, 2) }
            tolower($1) == "suites:" { $1 = ""; suites = substr($0, 2) }
            tolower($1) == "uris:"   { $1 = ""; uris = substr($0, 2) }
            tolower($1) == "enabled:" && tolower($2) == "no" { types = "" }
            END { if (!found) flush() }' "$f")"
        [[ -n "$uri" ]] && { echo "$uri"; return 0; }
    done
    echo "http://deb.debian.org/debian"
}

command -v docker >/dev/null || die "docker CLI not found"
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install -y debootstrap)"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is dockerd running?)"
[[ "$(id -u)" == 0 ]] || die "debootstrap needs root"

MIRROR="${AUTO_DEV_MIRROR:-$(detect_mirror)}"
WORK="$(mktemp -d /tmp/auto-dev-rootfs.XXXXXX)"
ROOTFS="$WORK/rootfs"
cleanup() {
    if [[ "${AUTO_DEV_KEEP_ROOTFS:-0}" != 1 ]]; then rm -rf --one-file-system "$WORK"; fi
}
trap cleanup EXIT

step "debootstrap $SUITE (minbase + python3) from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include=python3 "$SUITE" "$ROOTFS" "$MIRROR"

step "trimming the root filesystem"
# No setuid/setgid programs: nothing inside may gain privileges even if no-new-privileges were off.
find "$ROOTFS" -xdev -type f -perm /6000 -exec chmod ug-s {} +
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + \
    2>/dev/null || true
"$ROOTFS"/usr/bin/python3 --version >/dev/null 2>&1 || chroot "$ROOTFS" python3 --version >/dev/null \
    || die "python3 is missing from the root filesystem"

step "importing $BASE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$BASE" >/dev/null

step "adding the sandbox user (uid $SANDBOX_UID) as $IMAGE"
CTX="$WORK/context"
mkdir -p "$CTX"
cat >"$CTX/Dockerfile" <<EOF
FROM $BASE
# A dedicated user owns nothing on the image: candidate code may only write its tmpfs scratch.
RUN echo 'sandbox:x:$SANDBOX_UID:$SANDBOX_UID:auto-dev sandbox:/tmp:/usr/sbin/nologin' >> /etc/passwd \\
 && echo 'sandbox:x:$SANDBOX_UID:' >> /etc/group \\
 && echo 'sandbox:!:19000:0:99999:7:::' >> /etc/shadow
LABEL org.opencontainers.image.title="auto-dev sandbox" auto-dev.sandbox.image="1" \\
      auto-dev.sandbox.source="debootstrap"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER $SANDBOX_UID:$SANDBOX_UID
WORKDIR /tmp
CMD ["python3"]
EOF
# The legacy builder prints a deprecation notice on every build: show its output only on failure.
docker build --network none -q -t "$IMAGE" "$CTX" >"$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log" >&2; die "docker build of $IMAGE failed"; }

step "checking the image"
docker run --rm --network none "$IMAGE" python3 -c \
    'import os, sys; assert os.getuid() != 0, "runs as root"; print(sys.version.split()[0])' \
    | sed 's/^/python /'
step "built $IMAGE"
