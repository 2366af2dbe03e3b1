#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then run an all-in-one NovaCron node in the foreground:
# API + web + controllers + embedded node agent on https://127.0.0.1:8080 (QEMU guests, TCG unless
# the host really supports KVM), with a certificate of the node's own CA ($NOVACRON_STATE_DIR/pki/ca.crt).
# On the first start it imports the test guest as the public image 'novacron-test-guest' and prints
# the admin password.
#
#   bash scripts/up.sh
#
# Environment: NOVACRON_STATE_DIR (default /var/lib/novacron), NOVACRON_LISTEN_HOST (127.0.0.1),
# NOVACRON_LISTEN_PORT (8080), NOVACRON_TLS_CERT/NOVACRON_TLS_KEY (your own certificate),
# NOVACRON_PLAIN_HTTP=1 (plain HTTP, loopback only); every NOVACRON_* setting of
# src/novacron/config.py applies.
# Stop with Ctrl-C. Running VMs keep running; the next start re-attaches to them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

export NOVACRON_STATE_DIR="${NOVACRON_STATE_DIR:-/var/lib/novacron}"
export NOVACRON_LISTEN_HOST="${NOVACRON_LISTEN_HOST:-127.0.0.1}"
export NOVACRON_LISTEN_PORT="${NOVACRON_LISTEN_PORT:-8080}"
export PATH="$ROOT/.venv/bin:$PATH"
STATE="$NOVACRON_STATE_DIR"
SCHEME=https
[ "${NOVACRON_PLAIN_HTTP:-0}" = 1 ] && SCHEME=http
URL="$SCHEME://$NOVACRON_LISTEN_HOST:$NOVACRON_LISTEN_PORT"
CA="$STATE/pki/ca.crt"
MARKER="$STATE/.test-guest-imported"
# the state dir holds the database, the key-encryption keys and the VMs' disks: this account's only
umask 077
mkdir -p "$STATE"
chmod 700 "$STATE"

# whatever it speaks: a listener on the port is in the way
if (exec 3<>"/dev/tcp/$NOVACRON_LISTEN_HOST/$NOVACRON_LISTEN_PORT") 2>/dev/null; then
    echo "[up] something already listens on $NOVACRON_LISTEN_HOST:$NOVACRON_LISTEN_PORT; stop it first (or set NOVACRON_LISTEN_PORT)" >&2
    exit 1
fi

novacron-server &
srv=$!
stop_server() { kill -TERM "$srv" 2>/dev/null || true; }
trap stop_server INT TERM HUP

if [ ! -f "$MARKER" ]; then
    if python scripts/import_test_guest.py --url "$URL" --state-dir "$STATE" --server-pid "$srv"; then
        touch "$MARKER"
    else
        echo "[up] WARNING: the test guest was not imported; the node runs anyway" >&2
    fi
fi

cat >&2 <<MSG
[up] ================================================================
[up] NovaCron is running: $URL   (API docs: $URL/docs)
[up] TLS:  certificate of the node's CA $CA (trust it in your browser, or use your own: README)
[up] user: admin   password: $(cat "$STATE/admin-password" 2>/dev/null || echo "(changed since first start)")
[up] try:  novacron login --username admin --ca-file $CA   (the CLI is $ROOT/.venv/bin/novacron)
[up]       novacron vm create --image novacron-test-guest --flavor tiny --name demo
[up] state: $STATE   stop: Ctrl-C (VMs keep running and are re-attached on the next start)
[up] ================================================================
MSG

# wait returns early when a trapped signal arrives; keep waiting until the server has exited
rc=0
while kill -0 "$srv" 2>/dev/null; do
    wait "$srv" || rc=$?
done
exit "$rc"
