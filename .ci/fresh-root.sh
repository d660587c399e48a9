#!/usr/bin/env bash
# Run the README's two commands where a newcomer meets them: a fresh Debian 12
# root with nothing but `make` added. As root:
#   .ci/fresh-root.sh [COMMAND ...]        (default: "make demo" "make test")
# Exits 0 when every command exits 0; prints the last lines of each command.
#
# The minbase root is made once with debootstrap and kept as a tarball
# ($TCPLAB_FRESH_DIR, default /var/tmp/tcplab-fresh/bookworm-minbase.tar);
# each run unpacks it into a private directory, clones this checkout's HEAD
# into it (committed work only, as a new user would get it) and runs each
# command in a chroot with /proc, /sys and /dev mounted. The root is
# bind-mounted on itself because `ip netns exec` remounts /sys and needs / to
# be a mount point. Mounts and the directory are removed on any exit.
# The mirror and apt settings are this machine's.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "fresh-root: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
cmds=("$@"); [ ${#cmds[@]} -gt 0 ] || cmds=("make demo" "make test")
cache=${TCPLAB_FRESH_DIR:-/var/tmp/tcplab-fresh}
tarball="$cache/bookworm-minbase.tar"
root="$cache/run.$$"
mkdir -p "$cache" || exit 1

apt_into() { # this host's apt sources, keys and proxy settings, and DNS
  mkdir -p "$1/etc/apt"
  cp -L /etc/resolv.conf "$1/etc/resolv.conf" 2>/dev/null || true
  local d
  for d in sources.list sources.list.d apt.conf.d auth.conf.d trusted.gpg.d keyrings; do
    if [ -e "/etc/apt/$d" ]; then cp -a "/etc/apt/$d" "$1/etc/apt/" || return 1; fi
  done
}

make_tarball() {
  local boot="$cache/boot.$$" mirror log="$cache/debootstrap.log"
  if ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null || return 1
  fi
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  rm -rf --one-file-system "$boot"
  echo "fresh-root: debootstrap --variant=minbase bookworm ${mirror:-(default mirror)} (log: $log)"
  if ! debootstrap --variant=minbase bookworm "$boot" ${mirror:+"$mirror"} >"$log" 2>&1; then
    echo "fresh-root: debootstrap failed, see $log" >&2; rm -rf --one-file-system "$boot"; return 1
  fi
  apt_into "$boot" && chroot "$boot" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    bash -c 'apt-get update -qq && apt-get install -y -qq make && apt-get clean' >>"$log" 2>&1 || {
    echo "fresh-root: installing make in the new root failed, see $log" >&2; rm -rf --one-file-system "$boot"; return 1; }
  tar -C "$boot" -cf "$tarball.$$" . && mv "$tarball.$$" "$tarball"
  local rc=$?; rm -rf --one-file-system "$boot"; return $rc
}

cleanup() {
  # lazy, recursive: /sys and /dev are rbind mounts with submounts
  if mountpoint -q "$root" 2>/dev/null; then umount -R -l "$root" 2>/dev/null; fi
  rm -rf --one-file-system "$root" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -f "$tarball" ] || make_tarball || exit 1
mkdir "$root" && tar -C "$root" -xf "$tarball" || exit 1
mount --bind "$root" "$root" || exit 1
apt_into "$root" || exit 1
mount -t proc proc "$root/proc" && mount --rbind /sys "$root/sys" && mount --rbind /dev "$root/dev" || exit 1
# slaves of the host's mounts: unmounting the copies (cleanup) never propagates back to the host
mount --make-rslave "$root/sys" && mount --make-rslave "$root/dev" || exit 1
mkdir -p "$root/src"
git clone -q "$here" "$root/src/tcplab" || { echo "fresh-root: git clone $here failed" >&2; exit 1; }
echo "fresh-root: $(git -C "$root/src/tcplab" log -1 --format='%h %s' | cut -c1-100)"

rc=0
for c in "${cmds[@]}"; do
  log="$cache/$(printf %s "$c" | tr -c 'A-Za-z0-9' '_').$$.log"
  echo "== fresh root: $c (full log: $log)"
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /src/tcplab && $c" >"$log" 2>&1
  r=$?
  tail -n 15 "$log"
  echo "== fresh root: $c: exit $r"
  [ $r = 0 ] || rc=1
done
if [ $rc = 0 ]; then echo "fresh-root: PASS (${cmds[*]})"; else echo "fresh-root: FAIL (${cmds[*]})"; fi
exit $rc
