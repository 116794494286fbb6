#!/bin/sh
# Prepare a Docker engine for roomhub's docker runtime and its tests (idempotent; run as root).
#
#   1. install Debian's docker.io and busybox-static when missing;
#   2. start dockerd when no engine answers (--iptables=false --bridge=none suits
#      containers and CI machines without netfilter; log in $DOCKERD_LOG);
#   3. build the test image roomhub-test-busybox:latest locally: a static busybox in
#      an otherwise empty root file system, imported with `docker import`.
#      Nothing is pulled from a registry.
#
# Environment: DOCKERD_LOG (default /var/log/roomhub-dockerd.log),
# ROOMHUB_TEST_IMAGE (default roomhub-test-busybox:latest), REBUILD=1 to rebuild the image.
set -eu

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

if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "image $IMAGE already present"
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
