#!/usr/bin/env bash
# machines.sh: emulate real Debian 12 servers on this machine, for proving deploys.
#
# Each machine is a systemd-nspawn container that boots systemd as PID 1 from its own
# copy-on-write root file system (overlayfs over one shared Debian 12 tree), inside an
# existing network namespace (e.g. the lab's <lab>-<host>, wired to br0 in <lab>-net).
# SSH, systemd units, apt and journald behave as on a real server, so Ansible can be
# pointed at them unchanged.
#
# The host does not run systemd as PID 1, so there is no machined to register with and
# no scope units to create: nspawn runs with --register=no --keep-unit, and this script
# gives every machine a cgroup of its own (see machine_cgroups).
#
#   machines.sh rootfs CACHE_DIR
#   machines.sh boot NAME NETNS CACHE_DIR STATE_DIR [AUTHORIZED_KEY_FILE]
#   machines.sh exec NAME -- CMD...
#   machines.sh stop NAME STATE_DIR
#   machines.sh selftest CACHE_DIR
#
# Environment: MACHINES_BOOT_TIMEOUT (s, default 120), MACHINES_STOP_TIMEOUT (s, default
# 60), MACHINES_MIRROR / MACHINES_SECURITY_MIRROR (default: the host's apt sources).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
readonly SELF
readonly SUITE=bookworm
readonly BOOT_TIMEOUT=${MACHINES_BOOT_TIMEOUT:-120}
readonly STOP_TIMEOUT=${MACHINES_STOP_TIMEOUT:-60}
# Every machine's cgroup lives under this name in each hierarchy the host mounts.
readonly CGROUP_PARENT=webstack-machines
# A clean PATH and environment for commands run inside a machine: the caller's
# environment (PATH, LD_*, proxies) describes the host, not the machine.
readonly MACHINE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# What a server has before any role is deployed (debootstrap --include).
readonly BASE_PACKAGES=(systemd systemd-sysv dbus openssh-server python3 sudo iproute2
    nftables curl ca-certificates netbase)
# What the roles need, installed from the host because the lab's network has no route
# out. python3-apt: Ansible's apt module needs it and would otherwise try to install it
# (from the network) on first use. libtomlplusplus3, libboost-json1.81.0: ldd of
# webstack-app and webstack-failover (with libfmt9, libmariadb3, libsystemd0).
readonly ROLE_PACKAGES=(haproxy keepalived socat nginx-light mariadb-server mariadb-client
    prometheus prometheus-alertmanager prometheus-blackbox-exporter
    prometheus-node-exporter prometheus-nginx-exporter prometheus-mysqld-exporter
    libsystemd0 libmariadb3 libfmt9 libtomlplusplus3 libboost-json1.81.0 python3-apt)

# Packaged services that cannot start until the deploy configures them: disabled.
readonly UNCONFIGURED_UNITS=(prometheus-mysqld-exporter.service prometheus-nginx-exporter.service)

# ---------------------------------------------------------------------------- helpers

# Messages never fail the script: cleanup must go on when the caller stopped reading.
die() { echo "machines.sh: error: $*" >&2 || true; exit 1; }
info() { echo "machines.sh: $*" || true; }
usage() {
    sed -n 's/^#   machines.sh/usage: machines.sh/p' "$SELF" >&2
    exit 2
}
# Seconds elapsed since a $EPOCHREALTIME value, with 2 decimals.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
require_root() { [[ $EUID -eq 0 ]] || die "$1 needs root (mounts, namespaces, nspawn)"; }
# Absolute path without requiring it to exist; refuses whitespace, which the mount
# options and /proc/self/mountinfo parsing below cannot carry.
abspath() {
    local p
    p=$(realpath -m -- "$1")
    [[ $p != *[[:space:],:]* ]] || die "path '$p' contains whitespace, ',' or ':' (overlayfs mount options cannot carry them)"
    echo "$p"
}
valid_name() {
    [[ $1 =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] ||
        die "'$1' is not a valid machine name (a host name label: a-z, 0-9, '-')"
}

# Installs host packages this script needs, only if missing.
ensure_host_packages() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    info "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed on the host"
}

# Mount points at or below a directory, deepest first (so they unmount in order).
mounts_below() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
umount_below() {
    local m
    for m in $(mounts_below "$1"); do
        umount "$m" 2>/dev/null || umount -l "$m" || die "cannot unmount $m"
    done
}

# A process is alive if it exists and is not a zombie (a zombie nspawn whose parent has
# not reaped it yet has finished all the same).
alive() {
    local s
    s=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $s && $s != Z ]]
}

# The systemd-nspawn process running machine NAME: its argv holds --machine=NAME. Its
# own short-lived forks (before the container's init execs) carry the same argv and are
# skipped by requiring a parent that is not systemd-nspawn.
find_nspawn() {
    local p pid ppid
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null) == systemd-nspawn ]] || continue
        tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "--machine=$1" || continue
        pid=${p#/proc/}
        ppid=$(awk '/^PPid:/ { print $2 }' "$p/status" 2>/dev/null) || continue
        [[ $(cat "/proc/$ppid/comm" 2>/dev/null) == systemd-nspawn ]] && continue
        alive "$pid" && { echo "$pid"; return 0; }
    done
    return 1
}

# The container's PID 1 (host pid) under an nspawn pid: the child that is pid 1 of its
# own pid namespace and has exec'd systemd. Fails while the container is still starting.
container_leader() {
    local c
    # shellcheck disable=SC2013 # space-separated pids
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        awk '/^NSpid:/ { exit !(NF >= 3 && $NF == 1) }' "/proc/$c/status" 2>/dev/null || continue
        [[ $(cat "/proc/$c/comm" 2>/dev/null) == systemd ]] || continue
        echo "$c"
        return 0
    done
    return 1
}

# Runs a command inside the machine whose PID 1 is $1: its mount, UTS, IPC, network,
# pid and cgroup namespaces (the user namespace is the host's: --private-users=no).
in_machine() {
    local leader=$1
    shift
    nsenter --target "$leader" --mount --uts --ipc --net --pid --cgroup -- \
        env -i PATH="$MACHINE_PATH" HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" "$@"
}

# ---------------------------------------------------------------------------- rootfs

# Mirrors from the host's apt configuration (this machine reaches only Debian's mirror).
host_mirror() {
    # shellcheck disable=SC2016 # apt's own $(FIELD) syntax
    apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
        awk -v r="$1" '$2 == r { sub("/$", "", $1); print $1; exit }'
}

ROOTFS_BUILD=""
rootfs_cleanup() {
    # On failure the tree stays without its marker: the next run removes and rebuilds it.
    [[ -n $ROOTFS_BUILD ]] && umount_below "$ROOTFS_BUILD"
    return 0
}

# Runs a build step, its output to the build log; on failure shows the log's end.
step() {
    local what=$1
    shift
    echo "== $what" >>"$ROOTFS_LOG"
    # 9>&-: the build's lock stays with this script, not with what it starts.
    if ! "$@" >>"$ROOTFS_LOG" 2>&1 9>&-; then
        tail -n 25 "$ROOTFS_LOG" >&2
        die "rootfs: $what failed (full log: $ROOTFS_LOG)"
    fi
}
in_chroot() {
    chroot "$ROOTFS_BUILD" env -i PATH="$MACHINE_PATH" HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

cmd_rootfs() {
    (($# == 1)) || usage
    require_root rootfs
    local cache root build marker t0 mirror security p
    cache=$(abspath "$1")
    root=$cache/rootfs build=$cache/rootfs.building marker=$cache/rootfs.complete
    # One build at a time (scripts/test.sh starts one early, in the background, and a
    # deploy test may ask while it runs): a second caller waits, then finds it complete.
    mkdir -p "$cache"
    exec 9>"$cache/rootfs.lock"
    if ! flock -n 9; then
        # (Below `webstack machines up`'s own 15-minute bound on this command.)
        info "rootfs: another build of $root is running; waiting for it (at most 14 minutes)"
        flock -w 840 9 || die "rootfs: the build holding $cache/rootfs.lock did not end in 14 minutes"
    fi
    # The marker holds the package lists the tree was built from: another list (this
    # script changed) builds it again.
    local want="${BASE_PACKAGES[*]} / ${ROLE_PACKAGES[*]}"
    if [[ -f $marker && -d $root/usr && $(cat "$marker") == "$want" ]]; then
        info "rootfs: $root is complete ($(du -sh --one-file-system "$root" | cut -f1)); remove $marker to rebuild"
        return 0
    fi
    ensure_host_packages debootstrap systemd-container
    # A tree without the marker was interrupted mid-build (missing packages, half-
    # configured dpkg state): start over. Never under a running machine's overlay.
    for p in "$root" "$build"; do
        [[ -e $p ]] || continue
        ! grep -qF "lowerdir=$p," /proc/self/mountinfo ||
            die "rootfs: $p is incomplete but a machine's overlay still uses it; stop the machines first"
        info "rootfs: removing $p (incomplete, or built from other package lists)"
        umount_below "$p"
        rm -rf --one-file-system "$p"
    done
    rm -f "$marker"

    mirror=${MACHINES_MIRROR:-$(host_mirror "$SUITE")}
    security=${MACHINES_SECURITY_MIRROR:-$(host_mirror "$SUITE-security")}
    mirror=${mirror:-http://deb.debian.org/debian}
    security=${security:-http://deb.debian.org/debian-security}
    ROOTFS_LOG=$cache/rootfs-build.log
    : >"$ROOTFS_LOG"
    ROOTFS_BUILD=$build
    trap rootfs_cleanup EXIT
    t0=$EPOCHREALTIME
    info "rootfs: debootstrap $SUITE (minbase) from $mirror into $build (log: $ROOTFS_LOG)"
    step "debootstrap --variant=minbase $SUITE" debootstrap --variant=minbase \
        --include="$(IFS=,; echo "${BASE_PACKAGES[*]}")" "$SUITE" "$build" "$mirror"

    # The same suites as the host (updates, security), so the role packages and the
    # libraries our binaries were linked against are the host's versions.
    rm -f "$build/etc/apt/sources.list"
    cat >"$build/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # No service may start inside the chroot: it would run in the host's namespaces,
    # hold the tree busy and bind the host's ports. invoke-rc.d honours exit 101.
    printf '#!/bin/sh\nexit 101\n' >"$build/usr/sbin/policy-rc.d"
    chmod 755 "$build/usr/sbin/policy-rc.d"
    # Keep the image small: no manuals or translations in what is installed from now on.
    cat >"$build/etc/dpkg/dpkg.cfg.d/01-webstack-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    # Maintainer scripts (mariadb-install-db, adduser, ...) expect /proc and a pty.
    mount -t proc proc "$build/proc" || die "rootfs: cannot mount /proc in $build"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$build/dev/pts" ||
        die "rootfs: cannot mount devpts in $build"
    step "apt-get update (in the chroot)" in_chroot apt-get update
    step "apt-get dist-upgrade (updates and security)" in_chroot apt-get -y dist-upgrade
    info "rootfs: installing the roles' packages ($(since "$t0") s so far)"
    step "apt-get install ${ROLE_PACKAGES[*]}" in_chroot apt-get install -y \
        --no-install-recommends "${ROLE_PACKAGES[@]}"
    step "apt-get clean" in_chroot apt-get clean
    # Debian enables every packaged service. These two cannot start before the deploy
    # configures them (mysqld-exporter: no /var/lib/prometheus/.my.cnf; nginx-exporter:
    # no stub_status on :8080), so they would fail on every boot and leave each machine
    # "degraded". The deploy enables what a host's roles need.
    step "systemctl disable ${UNCONFIGURED_UNITS[*]}" in_chroot systemctl disable "${UNCONFIGURED_UNITS[@]}"

    # Anything still running from the chroot escaped policy-rc.d: those are ours, end them.
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/root" 2>/dev/null) == "$build" ]] || continue
        info "rootfs: ending pid ${p#/proc/} ($(cat "$p/comm")) left running by a package's scripts"
        kill -KILL "${p#/proc/}" 2>/dev/null || true
    done
    umount_below "$build"
    rm -f "$build/usr/sbin/policy-rc.d"
    # Package lists are 100+ MB and stale by the time a machine boots; installed
    # packages stay known to dpkg/apt, which is all an offline "state=present" needs.
    rm -rf "$build"/var/lib/apt/lists/* "$build"/var/cache/apt/*.bin \
        "$build"/var/cache/debconf/*-old "$build"/var/log/apt/* "$build"/var/log/*.log
    # Per-machine identity is made at boot, never shared through the image: an empty
    # machine-id and no SSH host keys (every machine gets its own, see cmd_boot).
    : >"$build/etc/machine-id"
    rm -f "$build"/var/lib/dbus/machine-id "$build"/etc/ssh/ssh_host_*
    ln -s /etc/machine-id "$build/var/lib/dbus/machine-id"
    echo localhost >"$build/etc/hostname"

    mv "$build" "$root"
    ROOTFS_BUILD=""
    printf '%s\n' "$want" >"$marker"
    info "rootfs: $root complete: $(du -sh --one-file-system "$root" | cut -f1), built in $(since "$t0") s"
}

# ---------------------------------------------------------------------------- cgroups

# Without systemd on the host nobody hands nspawn a cgroup (no scope unit), and nspawn
# (--keep-unit) uses the cgroup it was started in, creating "payload" and "supervisor"
# below it. Starting every machine in a cgroup of its own keeps machines apart from each
# other and from the caller, and lets stop find every leftover process.
# Prints the cgroup directories for machine NAME, one per hierarchy the host has
# mounted that systemd uses (cgroup2: unified or /sys/fs/cgroup itself; v1 name=systemd).
machine_cgroups() {
    local base
    for base in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd /sys/fs/cgroup; do
        [[ -f $base/cgroup.procs ]] || continue
        echo "$base/$CGROUP_PARENT/$1"
        # cgroup2 mounted on /sys/fs/cgroup itself is the only hierarchy there is.
        [[ $base == /sys/fs/cgroup ]] && break
    done
}
# Removes a machine's (empty) cgroups, deepest first.
remove_cgroups() {
    local cg
    for cg in $(machine_cgroups "$1"); do
        [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
        rmdir "${cg%/*}" 2>/dev/null || true # the parent, once no machine is left
    done
    return 0
}

# ---------------------------------------------------------------------------- boot

BOOT_DIR="" BOOT_NAME="" BOOT_OK=0
boot_cleanup() {
    # A failed boot leaves nothing running and nothing mounted (the disk stays).
    ((BOOT_OK)) && return 0
    [[ -n $BOOT_DIR ]] || return 0
    echo "machines.sh: boot $BOOT_NAME failed; stopping what was started" >&2
    "$SELF" stop "$BOOT_NAME" "$(dirname "$BOOT_DIR")" >&2 || true
}

cmd_boot() {
    (($# == 4 || $# == 5)) || usage
    require_root boot
    local name=$1 netns=$2 cache state key=${5:-} dir lower r t0 t1 pid leader st cg
    cache=$(abspath "$3") state=$(abspath "$4")
    valid_name "$name"
    [[ -e /run/netns/$netns ]] ||
        die "boot $name: network namespace /run/netns/$netns does not exist (ip netns add $netns)"
    lower=$cache/rootfs
    [[ -f $cache/rootfs.complete && -d $lower ]] ||
        die "boot $name: no complete root file system in $cache (run: machines.sh rootfs $cache)"
    [[ -z $key || -r $key ]] || die "boot $name: cannot read the authorized key file $key"
    if pid=$(find_nspawn "$name"); then
        die "boot $name: a machine of that name is already running (systemd-nspawn pid $pid)"
    fi
    t0=$EPOCHREALTIME
    dir=$state/$name r=$state/$name/root
    mkdir -p "$dir/upper" "$dir/work" "$r"
    BOOT_DIR=$dir BOOT_NAME=$name
    trap boot_cleanup EXIT

    # Copy-on-write root: the shared tree read-only below, this machine's changes (its
    # "disk", kept across stop/boot) above. A mount left by a crash is replaced.
    mountpoint -q "$r" && { umount "$r" || die "boot $name: cannot unmount the stale $r"; }
    mount -t overlay "machine-$name" \
        -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$r" ||
        die "boot $name: cannot mount overlayfs on $r (lower $lower, upper $dir/upper); the state directory's file system must be able to hold an upper layer (ext4, xfs, btrfs, tmpfs; not overlayfs)"

    # Identity, as an installer would set it.
    echo "$name" >"$r/etc/hostname"
    cat >"$r/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$name
::1	localhost ip6-localhost ip6-loopback
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
EOF
    [[ -s $r/etc/machine-id ]] || tr -d - </proc/sys/kernel/random/uuid >"$r/etc/machine-id"
    # Own SSH host keys, made once on the machine's first boot (with the image's own
    # ssh-keygen) and kept on its disk, as a real server's would be.
    local t
    for t in rsa ecdsa ed25519; do
        [[ -s $r/etc/ssh/ssh_host_${t}_key ]] && continue
        chroot "$r" ssh-keygen -q -t "$t" -N '' -C "root@$name" -f "/etc/ssh/ssh_host_${t}_key" ||
            die "boot $name: ssh-keygen -t $t failed in $r"
    done
    if [[ -n $key ]]; then
        install -d -m 700 "$r/root/.ssh"
        install -m 600 "$key" "$r/root/.ssh/authorized_keys"
    fi
    # The lab network has no route out, and the packages came from this machine's
    # mirror when the root file system was built: its apt lists are as fresh as they can
    # be. Say so on every boot, or an `apt update_cache` with a cache_valid_time (the
    # playbook's) tries the network and waits out apt's timeouts once the tree is an
    # hour old.
    install -d -m 755 "$r/var/lib/apt/periodic"
    touch "$r/var/lib/apt/periodic/update-success-stamp"

    # nspawn keeps a per-machine directory here for propagating mounts into the running
    # container. A host systemd would have made it; nspawn alone makes it mode 0600.
    install -d -m 755 /run/systemd/nspawn /run/systemd/nspawn/propagate
    for cg in $(machine_cgroups "$name"); do
        # Twice: a machine stopping at the same moment may remove the (empty) parent.
        mkdir -p "$cg" 2>/dev/null || mkdir -p "$cg" || die "boot $name: cannot create the cgroup $cg"
    done
    : >"$dir/console.log"
    t1=$EPOCHREALTIME
    # In the background, in its own session (a ^C or hangup of the caller must not reach
    # the machine), stdio detached from the caller (whose pipes would otherwise stay
    # open): the console's output goes to console.log. --console=read-only: a pty as
    # /dev/console (systemd needs one), its output copied to nspawn's stdout, no input.
    # --private-users=no: the container's root is the host's root; user namespaces would
    # need the overlay id-mapped or chowned (copying the whole tree up).
    # CAP_NET_ADMIN and a writable /proc/sys/net (SYSTEMD_NSPAWN_API_VFS_WRITABLE=network):
    # a server manages its own network (nftables, keepalived's addresses, net.* sysctls
    # such as ip_nonlocal_bind); here that network is the machine's own namespace.
    (
        for cg in $(machine_cgroups "$name"); do echo "$BASHPID" >"$cg/cgroup.procs"; done
        SYSTEMD_NSPAWN_API_VFS_WRITABLE=network exec setsid systemd-nspawn --boot --register=no --keep-unit \
            --network-namespace-path="/run/netns/$netns" -D "$r" --machine="$name" \
            --private-users=no --console=read-only --resolv-conf=off --timezone=off \
            --link-journal=no --capability=CAP_NET_ADMIN
    ) </dev/null >>"$dir/console.log" 2>&1 &
    pid=$!
    disown "$pid" # it outlives this script; no job notice if it dies early
    echo "$pid" >"$dir/pid"

    # Poll until systemd inside says the boot is over (running, or degraded: some unit
    # failed), "offline"/"" meaning its manager is not reachable yet. "running" comes
    # too early when a failing service waits to be restarted (sub-state auto-restart:
    # no job queued, not failed yet), so also wait for no unit to be in that state.
    local deadline=$((SECONDS + BOOT_TIMEOUT)) restarting=""
    st=""
    while :; do
        if ! alive "$pid"; then
            tail -n 20 "$dir/console.log" >&2
            die "boot $name: systemd-nspawn (pid $pid) exited during boot; console: $dir/console.log"
        fi
        if leader=$(container_leader "$pid"); then
            st=$(timeout 10 nsenter --target "$leader" --mount --uts --ipc --net --pid \
                --cgroup -- systemctl is-system-running 2>/dev/null) || true
            case $st in
            running | degraded)
                restarting=$(timeout 10 nsenter --target "$leader" --mount --uts --ipc \
                    --net --pid --cgroup -- systemctl list-units --all --no-legend --plain \
                    --state=auto-restart | awk '{ printf "%s ", $1 }') || true
                [[ -z $restarting ]] && break
                ;;
            maintenance | stopping)
                die "boot $name: systemd reports '$st'; console: $dir/console.log" ;;
            esac
        fi
        if ((SECONDS >= deadline)); then
            [[ -n $restarting ]] || die "boot $name: not up after ${BOOT_TIMEOUT}s (systemd: '${st:-unreachable}'); console: $dir/console.log"
            echo "machines.sh: boot $name: warning: still restarting after ${BOOT_TIMEOUT}s: $restarting" >&2
            break
        fi
        sleep 0.1
    done
    BOOT_OK=1
    info "boot $name: $st in $(since "$t1") s (total with the overlay $(since "$t0") s); systemd-nspawn pid $pid, PID 1 = host pid $leader, netns $netns"
    if [[ $st == degraded ]]; then
        info "boot $name: failed units:"
        in_machine "$leader" systemctl list-units --failed --no-legend --plain | sed 's/^/  /'
    fi
}

# ---------------------------------------------------------------------------- exec

cmd_exec() {
    if (($# < 3)) || [[ $2 != -- ]]; then usage; fi
    require_root exec
    local name=$1 pid leader
    shift 2
    pid=$(find_nspawn "$name") || die "exec $name: no running machine of that name"
    leader=$(container_leader "$pid") || die "exec $name: machine is still starting (no PID 1 yet)"
    in_machine "$leader" "$@"
}

# ---------------------------------------------------------------------------- stop

cmd_stop() {
    (($# == 2)) || usage
    require_root stop
    local name=$1 state dir pid="" leader t0 deadline cg p
    state=$(abspath "$2")
    valid_name "$name"
    dir=$state/$name
    # The recorded pid only if it still is this machine's nspawn (pids are reused).
    if [[ -f $dir/pid ]]; then
        pid=$(<"$dir/pid")
        if ! alive "$pid" || ! tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null |
            grep -qxF -- "--machine=$name"; then
            pid=""
        fi
    fi
    [[ -n $pid ]] || pid=$(find_nspawn "$name") || pid=""
    t0=$EPOCHREALTIME
    if [[ -n $pid ]]; then
        # SIGRTMIN+4 asks systemd for poweroff.target: units stop in order (MariaDB
        # flushes), then PID 1 exits and nspawn with it. Sent again every 2 s: a pid
        # namespace's init only receives signals it has a handler for, and early in
        # boot (or before exec'ing systemd) it has none, so the signal is dropped.
        local next=0
        deadline=$((SECONDS + STOP_TIMEOUT))
        while alive "$pid" && ((SECONDS < deadline)); do
            if ((SECONDS >= next)) && leader=$(container_leader "$pid"); then
                kill -s RTMIN+4 "$leader" 2>/dev/null || true
                next=$((SECONDS + 2))
            fi
            sleep 0.1
        done
        if alive "$pid"; then
            echo "machines.sh: stop $name: no clean shutdown in ${STOP_TIMEOUT}s, killing it" >&2
            # Killing the pid namespace's init kills every process in it.
            leader=$(container_leader "$pid") && kill -KILL "$leader" 2>/dev/null
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
            ! alive "$pid" || die "stop $name: systemd-nspawn pid $pid survives SIGKILL"
        fi
    fi
    # Anything left in the machine's cgroups (a crash mid-boot) is one of its processes.
    for cg in $(machine_cgroups "$name"); do
        [[ -d $cg ]] || continue
        find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null |
            while read -r p; do kill -KILL "$p" 2>/dev/null || true; done
    done
    remove_cgroups "$name"
    if mountpoint -q "$dir/root" 2>/dev/null; then
        umount "$dir/root" || die "stop $name: cannot unmount $dir/root (in use: fuser -vm $dir/root)"
    fi
    rm -f "$dir/pid"
    [[ -n $pid ]] && info "stop $name: powered off in $(since "$t0") s"
    return 0
}

# ---------------------------------------------------------------------------- selftest

readonly ST_MACHINE=ws-mt-a ST_CLIENT=ws-mt-b ST_NET=ws-mt-net
readonly ST_ADDR=10.199.7.2 ST_CLIENT_ADDR=10.199.7.3
ST_TMP="" ST_FAILS=0

st_cleanup() {
    local ns
    # A closed stdout (| head) must not kill the cleanup half-way: ignored, SIGPIPE
    # stays ignored in the commands run from here, and writes just fail.
    trap '' PIPE
    if [[ -n $ST_TMP ]]; then "$SELF" stop "$ST_MACHINE" "$ST_TMP/state" || true; fi
    for ns in "$ST_MACHINE" "$ST_CLIENT" "$ST_NET"; do
        [[ -e /run/netns/$ns ]] && ip netns del "$ns"
    done
    # Only once nothing is mounted below it (stop failed otherwise: keep the evidence).
    if [[ -n $ST_TMP ]] && [[ -z $(mounts_below "$ST_TMP") ]]; then rm -rf --one-file-system "$ST_TMP"; fi
    return 0
}
indent() { sed 's/^/    /'; }
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [[ $2 == "$3" ]]; then
        echo "  PASS $1: $(tr '\n' ' ' <<<"$3")"
    else
        echo "  FAIL $1: expected '$(tr '\n' ' ' <<<"$2")', got '$(tr '\n' ' ' <<<"$3")'"
        ST_FAILS=$((ST_FAILS + 1))
    fi
}
# Memory of a machine: every process in its pid namespace. RSS counts shared pages in
# full in every process; PSS splits them between processes. File pages of the shared
# lower tree (binaries, libraries) are one page cache for all machines, so the
# anonymous part is what one more machine costs.
machine_memory() {
    local leader=$1 ns p rss=0 pss=0 anon=0 n=0 v
    ns=$(readlink "/proc/$leader/ns/pid")
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/ns/pid" 2>/dev/null) == "$ns" ]] || continue
        v=$(awk '/^VmRSS:/ { print $2 }' "$p/status" 2>/dev/null) && rss=$((rss + ${v:-0}))
        v=$(awk '/^RssAnon:/ { print $2 }' "$p/status" 2>/dev/null) && anon=$((anon + ${v:-0}))
        v=$(awk '/^Pss:/ { print $2 }' "$p/smaps_rollup" 2>/dev/null) && pss=$((pss + ${v:-0}))
        n=$((n + 1))
    done
    echo "$n processes, RSS $((rss / 1024)) MiB, PSS $((pss / 1024)) MiB, anonymous $((anon / 1024)) MiB"
    echo "  largest (RSS MiB):"
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/ns/pid" 2>/dev/null) == "$ns" ]] || continue
        awk -v c="$(cat "$p/comm" 2>/dev/null)" '/^VmRSS:/ { printf "%d %s\n", $2 / 1024, c }' "$p/status" 2>/dev/null
    done | sort -rn | head -n 6 | sed 's/^/    /'
}

cmd_selftest() {
    (($# == 1)) || usage
    require_root selftest
    local cache out leader pid ssh t0
    cache=$(abspath "$1")
    if pid=$(find_nspawn "$ST_MACHINE"); then
        die "selftest: machine $ST_MACHINE is already running (systemd-nspawn pid $pid): another self-test?"
    fi
    "$SELF" rootfs "$cache"
    ST_TMP=$(mktemp -d /tmp/ws-machines-selftest.XXXXXX)
    trap st_cleanup EXIT
    trap 'exit 130' INT TERM HUP
    st_cleanup_netns_leftovers

    # The lab's shape, none of it in the root namespace: a bridge in its own namespace,
    # one veth per host namespace (created from the bridge's side, peer moved straight in).
    ip netns add "$ST_NET"
    ip -n "$ST_NET" link add br0 type bridge
    ip -n "$ST_NET" link set br0 up
    local ns addr
    for ns in "$ST_MACHINE:$ST_ADDR" "$ST_CLIENT:$ST_CLIENT_ADDR"; do
        addr=${ns#*:} ns=${ns%%:*}
        ip netns add "$ns"
        ip -n "$ST_NET" link add "v-$ns" type veth peer name eth0 netns "$ns"
        ip -n "$ST_NET" link set "v-$ns" master br0 up
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
    done

    ssh-keygen -q -t ed25519 -N '' -C selftest -f "$ST_TMP/key"
    echo "== first boot of a new machine $ST_MACHINE in netns $ST_MACHINE"
    "$SELF" boot "$ST_MACHINE" "$ST_MACHINE" "$cache" "$ST_TMP/state" "$ST_TMP/key.pub"

    echo "== over SSH from netns $ST_CLIENT to root@$ST_ADDR"
    ssh=(ip netns exec "$ST_CLIENT" ssh -i "$ST_TMP/key" -o StrictHostKeyChecking=no
        -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5
        -o LogLevel=ERROR "root@$ST_ADDR")
    out=$("${ssh[@]}" systemctl is-system-running) || true
    check "systemctl is-system-running" running "$out"
    out=$("${ssh[@]}" systemctl is-active ssh haproxy nginx mariadb) || true
    check "systemctl is-active ssh haproxy nginx mariadb" $'active\nactive\nactive\nactive' "$out"
    out=$("${ssh[@]}" hostname) || true
    check hostname "$ST_MACHINE" "$out"
    out=$("${ssh[@]}" ip -4 -o addr show dev eth0 | awk '{ print $4 }') || true
    check "address on eth0" "$ST_ADDR/24" "$out"

    echo "== exec"
    out=$("$SELF" exec "$ST_MACHINE" -- cat /etc/hostname)
    check "machines.sh exec $ST_MACHINE -- cat /etc/hostname" "$ST_MACHINE" "$out"

    echo "== idle machine's memory"
    pid=$(<"$ST_TMP/state/$ST_MACHINE/pid")
    leader=$(container_leader "$pid")
    machine_memory "$leader"

    echo "== ansible from netns $ST_CLIENT"
    if command -v ansible >/dev/null; then
        local -a ans=(env ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_LOCAL_TEMP="$ST_TMP/ansible"
            ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=/dev/null -o ControlMaster=no"
            ip netns exec "$ST_CLIENT" ansible all -i "$ST_ADDR," -u root
            --private-key "$ST_TMP/key")
        t0=$EPOCHREALTIME
        out=$("${ans[@]}" -m ping 2>&1) || true
        indent <<<"$out"
        check "ansible -m ping ($(since "$t0") s)" SUCCESS "$(grep -o SUCCESS <<<"$out" | head -n1)"
        t0=$EPOCHREALTIME
        out=$("${ans[@]}" -m apt -a 'name=haproxy state=present' 2>&1) || true
        indent <<<"$out"
        check "ansible -m apt name=haproxy state=present: no change ($(since "$t0") s)" \
            '"changed": false' "$(grep -o '"changed": [a-z]*' <<<"$out" | head -n1)"
    else
        echo "  skipped: ansible is not installed (apt-get install ansible)"
    fi

    echo "== stop, then boot again (second boot: same machine, its disk kept)"
    "$SELF" stop "$ST_MACHINE" "$ST_TMP/state"
    "$SELF" boot "$ST_MACHINE" "$ST_MACHINE" "$cache" "$ST_TMP/state" "$ST_TMP/key.pub"
    out=$("${ssh[@]}" systemctl is-system-running) || true
    check "after the second boot: systemctl is-system-running" running "$out"
    "$SELF" stop "$ST_MACHINE" "$ST_TMP/state"

    st_cleanup
    trap - EXIT
    if ((ST_FAILS)); then die "selftest: $ST_FAILS check(s) failed"; fi
    info "selftest: all checks passed"
}
# Namespaces of a self-test that died without cleaning up (no machine runs in them:
# checked above) are removed before starting.
st_cleanup_netns_leftovers() {
    local ns
    for ns in "$ST_MACHINE" "$ST_CLIENT" "$ST_NET"; do
        if [[ -e /run/netns/$ns ]]; then
            info "selftest: removing the leftover namespace $ns"
            ip netns del "$ns"
        fi
    done
}

# ---------------------------------------------------------------------------- main

(($# >= 1)) || usage
cmd=$1
shift
case $cmd in
rootfs | boot | exec | stop | selftest) "cmd_$cmd" "$@" ;;
-h | --help | help) usage ;;
*) echo "machines.sh: unknown command '$cmd'" >&2; usage ;;
esac
