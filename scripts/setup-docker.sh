#!/bin/sh
# Prepare a Docker engine for roomhub's docker runtime and its tests (idempotent; run as root).
#
#   1. install Debian's docker.io and busybox-static when missing;
#   2. start dockerd when no engine answers (--iptables=false --bridge=none suits
#      containers and CI machines without netfilter; log in $DOCKERD_LOG);
#   3. build the test image roomhub-test-busybox:latest locally: a static busybox in
#      an otherwise empty root file system, imported with `docker import`;
#   4. with --demo-image: also build roomhub-demo:latest (Debian minbase with bash and
#      python3, made by debootstrap from the Debian archive) for the demo pages.
#      Nothing is pulled from a Docker registry.
#
# Environment: DOCKERD_LOG (default /var/log/roomhub-dockerd.log),
# ROOMHUB_TEST_IMAGE (default roomhub-test-busybox:latest), ROOMHUB_DEMO_IMAGE (default
# roomhub-demo:latest), DEBIAN_MIRROR (default: the first Debian archive apt is set up with),
# REBUILD=1 to rebuild images that exist.
set -eu

DEMO=0

# The Debian archive this machine's apt already uses (deb822 sources, then the classic list).
apt_mirror() {
    sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | grep . ||
        sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\).*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n 1
}
for arg in "$@"; do
    case "$arg" in
        --demo-image) DEMO=1 ;;
        *) echo "usage: $0 [--demo-image]" >&2; exit 2 ;;
    esac
done

IMAGE="${ROOMHUB_TEST_IMAGE:-roomhub-test-busybox:latest}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/roomhub-dockerd.log}"

need_pkgs=""
command -v dockerd >/dev/null 2>&1 || need_pkgs="$need_pkgs docker.io"
command -v docker >/dev/null 2>&1 || need_pkgs="$need_pkgs docker.io"
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs="$need_pkgs busybox-static"
if [ -n "$need_pkgs" ]; then
    echo "installing:$need_pkgs"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_pkgs >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: $DOCKERD_LOG)"
    nohup dockerd --iptables=false --bridge=none >"$DOCKERD_LOG" 2>&1 &
    i=0
    until docker info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 120 ]; then
            echo "dockerd did not answer within 60 s; its log:" >&2
            tail -n 40 "$DOCKERD_LOG" >&2
            exit 1
        fi
        sleep 0.5
    done
fi
echo "docker engine: $(docker version --format '{{.Server.Version}}')"

build_demo() {
    demo="${ROOMHUB_DEMO_IMAGE:-roomhub-demo:latest}"
    if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$demo" >/dev/null 2>&1; then
        echo "image $demo already present"
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    rootfs=$(mktemp -d)
    echo "building $demo with debootstrap (about a minute)"
    debootstrap --variant=minbase --include=bash,python3-minimal,procps bookworm "$rootfs" \
        "${DEBIAN_MIRROR:-$(apt_mirror)}" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc \
        "$rootfs"/usr/share/man "$rootfs"/usr/share/locale "$rootfs"/usr/share/info
    tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
        --change 'LABEL org.roomhub.demo-image=debian' - "$demo" >/dev/null
    rm -rf "$rootfs"
    echo "built $demo"
}

if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "image $IMAGE already present"
    [ "$DEMO" = 1 ] && build_demo
    exit 0
fi

busybox=""
for candidate in /bin/busybox /usr/bin/busybox; do
    if [ -x "$candidate" ] && LC_ALL=C ldd "$candidate" 2>&1 | grep -q "not a dynamic executable"; then
        busybox="$candidate"; break
    fi
done
[ -n "$busybox" ] || { echo "no static busybox found (apt-get install busybox-static)" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/room" "$root/root" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' \
    --change 'LABEL org.roomhub.test-image=busybox' \
    --message "roomhub test image: static busybox" - "$IMAGE" >/dev/null
echo "built $IMAGE ($("$busybox" | head -n 1))"
[ "$DEMO" = 1 ] && build_demo
exit 0
