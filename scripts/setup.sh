#!/usr/bin/env bash
# Set up everything NovaCron needs on a Debian 12 host, as root, from the package registries only:
# system packages (apt), the Python virtualenv .venv with pinned dependencies (PyPI, constrained by
# requirements.lock), the dashboard's pinned npm assets (web/node_modules) and the test guest
# (guest/out, built from Debian packages).
#
# Idempotent and fast on a second run: apt is not touched when every package is installed, pip is not
# run when requirements.lock, pyproject.toml and the interpreter are unchanged, and the guest builder
# returns at once when its outputs are current.
#
#   bash scripts/setup.sh          set up (or bring up to date)
#   bash scripts/setup.sh --lock   also rewrite requirements.lock from the working venv (pip freeze)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LOCK=0
for arg in "$@"; do
    case "$arg" in
        --lock) LOCK=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
SECONDS=0

[ "$(id -u)" -eq 0 ] || die "run as root: it installs Debian packages"
export DEBIAN_FRONTEND=noninteractive

# --- system packages ---------------------------------------------------------------------------
# Everything the platform and its tests use at run time. Tests start their own servers from these
# binaries (PostgreSQL is never started as a system service by this script).
APT_PACKAGES=(
    python3 python3-venv
    iptables iperf3 tcpdump
    qemu-system-x86 qemu-utils busybox-static cpio xz-utils
    ovmf swtpm swtpm-tools dosfstools mtools
    postgresql-15
    iproute2 nftables dnsmasq-base
    chromium chromium-driver
    curl ca-certificates git
    restic borgbackup
    python3-libnbd
    nbdkit nbdkit-plugin-python
    softhsm2
    victoria-metrics prometheus prometheus-alertmanager
    haproxy wrk keepalived socat pebble
    # NATS with JetStream (nats-server -js) for the event bus's NATS mode (tests/services/nats.py)
    nats-server
    pdns-server pdns-backend-sqlite3 dnsutils
    # Ceph 16 for the rbd volume pool's tests (a single-node cluster each test module starts,
    # tests/services/ceph.py) and QEMU's rbd block driver
    ceph-mon ceph-mgr ceph-osd qemu-block-extra
)
# Node.js and npm: the dashboard's pinned browser assets (web/package-lock.json) and the Azure Blob
# emulator (azurite) of the backup target tests. Debian 12's are enough; a newer node already on the
# machine (with its npm) is kept rather than downgraded.
if ! { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    && node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 18 ? 1 : 0)' 2>/dev/null; }; then
    APT_PACKAGES+=(nodejs npm)
fi

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        apt-get update -q >/dev/null || apt-get update
        APT_UPDATED=1
    fi
}

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == *"install ok installed"* ]]
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_update_once
    say "apt-get install ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || apt-get install -y --no-install-recommends "${missing[@]}"
    # Debian's postgresql-15 creates and starts a 'main' cluster; tests start their own servers
    # as a non-root user, so leave the packaged cluster stopped.
    if [ -d /run/systemd/system ]; then
        systemctl disable --now postgresql >/dev/null 2>&1 || true
    else
        pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
    fi
    # pdns-server starts a system PowerDNS on port 53 where systemd runs; global load balancing
    # runs its own pdns_server on a loopback port (gslb/powerdns.py), so keep the packaged one off.
    if [ -d /run/systemd/system ]; then
        systemctl disable --now pdns >/dev/null 2>&1 || true
    else
        service pdns stop >/dev/null 2>&1 || true
    fi
    # nats-server ships a system unit; tests start their own (tests/services/nats.py)
    if [ -d /run/systemd/system ]; then
        systemctl disable --now nats-server >/dev/null 2>&1 || true
    fi
fi
[ -x /usr/lib/postgresql/15/bin/initdb ] || die "PostgreSQL 15 binaries missing in /usr/lib/postgresql/15/bin"

# --- Python virtualenv ---------------------------------------------------------------------------
pick_python() {
    local c
    for c in python3 /usr/bin/python3; do
        if command -v "$c" >/dev/null 2>&1 \
            && "$c" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

VENV="$ROOT/.venv"
STAMP="$VENV/.novacron-setup"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
then
    PY="$(pick_python)" || die "no python3 >= 3.11 with venv support found"
    say "creating $VENV with $PY ($("$PY" --version 2>&1))"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

want_stamp() {
    {
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
        sha256sum requirements.lock pyproject.toml 2>/dev/null || true
    } | sha256sum | cut -d' ' -f1
}

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$(want_stamp)" ] \
    || ! "$VENV/bin/python" -c 'import novacron' 2>/dev/null; then
    say "pip install -e .[test] (constraints: requirements.lock)"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    if [ ! -f requirements.lock ]; then
        say "WARNING: no requirements.lock; installing from pyproject.toml's pins"
        "$VENV/bin/pip" install -q -e '.[test]'
    elif ! "$VENV/bin/pip" install -q -c requirements.lock -e '.[test]'; then
        # A pin in pyproject.toml newer than requirements.lock makes the constraints unsatisfiable.
        # Don't leave the platform uninstallable: say so loudly and install from pyproject's pins.
        say "WARNING: requirements.lock disagrees with pyproject.toml; installing without it."
        say "WARNING: refresh it with: bash scripts/setup.sh --lock"
        "$VENV/bin/pip" install -q -e '.[test]'
    fi
    want_stamp >"$STAMP"
fi

# libnbd's Python bindings (python3-libnbd): the NBD client that reads VM disks for backups
# (virt/cbt.py). Debian ships them for its python3 only and the venv does not see system
# site-packages (on purpose: nothing else of the system leaks in), so exactly these two modules
# are linked in, when the venv's Python has the same ABI.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
EXT="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
NBD_SO="/usr/lib/python3/dist-packages/libnbdmod$EXT"
[ -f "$NBD_SO" ] || die "python3-libnbd has no module for the venv's Python ($EXT); VM backups need it"
ln -sf /usr/lib/python3/dist-packages/nbd.py "$NBD_SO" "$SITE/"
"$VENV/bin/python" -c 'import nbd' || die "libnbd's Python bindings do not load in $VENV"

if [ "$LOCK" -eq 1 ]; then
    say "writing requirements.lock"
    {
        echo "# Pinned full dependency set of NovaCron (pip freeze of the working venv, minus the project)."
        echo "# Used as constraints: pip install -c requirements.lock -e '.[test]'. Regenerate: bash scripts/setup.sh --lock"
        "$VENV/bin/pip" freeze --exclude-editable 2>/dev/null | grep -viE '^(novacron|-e )' | LC_ALL=C sort -f
    } >requirements.lock.tmp
    mv requirements.lock.tmp requirements.lock
    want_stamp >"$STAMP"
fi

# --- npm tools (git-ignored build/npm) ---------------------------------------------------------
# The Azure Blob Storage emulator, for the backup target tests (build/npm/node_modules/.bin/azurite-blob).
AZURITE_VERSION=3.37.0
NPM_DIR="$ROOT/build/npm"
if [ "$(cat "$NPM_DIR/node_modules/azurite/package.json" 2>/dev/null \
        | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null)" \
        != "$AZURITE_VERSION" ]; then
    say "npm install azurite@$AZURITE_VERSION into $NPM_DIR"
    mkdir -p "$NPM_DIR"
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
fi

# panva's oidc-provider (a certified OpenID provider), for the single sign-on tests: they start it on a
# loopback address (tests/services/oidc_provider.mjs, build/oidc-provider/node_modules/oidc-provider).
OIDC_PROVIDER_VERSION=9.6.0
OIDC_DIR="$ROOT/build/oidc-provider"
if [ "$(cat "$OIDC_DIR/node_modules/oidc-provider/package.json" 2>/dev/null \
        | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null)" \
        != "$OIDC_PROVIDER_VERSION" ]; then
    say "npm install oidc-provider@$OIDC_PROVIDER_VERSION into $OIDC_DIR"
    mkdir -p "$OIDC_DIR"
    npm install --prefix "$OIDC_DIR" --no-audit --no-fund --loglevel=error \
        "oidc-provider@$OIDC_PROVIDER_VERSION" >/dev/null
fi

# --- dashboard vendor files ------------------------------------------------------------------------
# xterm.js, noVNC, uPlot and axe-core from the npm registry at the versions web/package-lock.json pins, into
# web/node_modules (git-ignored, served by the API server under /vendor). Re-run when the lock changes.
WEB_STAMP="web/node_modules/.novacron-lock.sha256"
if [ ! -f "$WEB_STAMP" ] || [ "$(cat "$WEB_STAMP")" != "$(sha256sum web/package-lock.json | cut -d' ' -f1)" ]; then
    say "npm ci (web/package-lock.json)"
    (cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) \
        || die "npm ci failed in web/"
    sha256sum web/package-lock.json | cut -d' ' -f1 >"$WEB_STAMP"
fi

# --- test guest ---------------------------------------------------------------------------------
# guest/build.py needs apt's package lists to resolve and download the kernel package on first build.
# (Capture apt-cache's output first: with pipefail, `grep -q` closing the pipe early fails the pipeline.)
if [ ! -f guest/out/.stamp ] \
    && [[ "$(apt-cache policy linux-image-amd64 2>/dev/null)" != *"Candidate: "[0-9]* ]]; then
    apt_update_once
fi
"$VENV/bin/python" guest/build.py >/dev/null
# the Secure Boot guest's disks: Debian's signed shim and GRUB (downloaded, not installed) + the guest
"$VENV/bin/python" guest/secureboot.py >/dev/null

say "ready in ${SECONDS}s (venv: $VENV, guest: $ROOT/guest/out)"
