#!/bin/bash
# Boot time of the test guest by firmware, on raw QEMU (the argv the platform builds, less its
# disks and NICs): QEMU start -> the guest kernel's "Run /init" on the serial console, 3 runs each.
#   BIOS: -machine pc, SeaBIOS, PVH direct boot of guest/out/vmlinux
#   UEFI: -machine q35, OVMF (Debian's ovmf), the EFI stub of guest/out/vmlinuz, a fresh NVRAM copy
#   UEFI kept NVRAM: the same with one store used by every run (as a VM's own across restarts)
# Usage: bench/bench_firmware_boot.sh [GUEST_DIR]   (default: $NOVACRON_GUEST_DIR or guest/out)
set -u
G=${1:-${NOVACRON_GUEST_DIR:-$(dirname "$0")/../guest/out}}
OVMF=/usr/share/OVMF
W=$(mktemp -d /tmp/fwboot.XXXXXX)
trap 'rm -rf "$W"' EXIT
cp "$OVMF/OVMF_VARS_4M.fd" "$W/kept.fd"
echo "# $(date -u '+%F %H:%M UTC'), $(nproc) cores, $(qemu-system-x86_64 --version | head -1); load $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # name, QEMU arguments...
    local name=$1; shift
    for i in 1 2 3; do
        rm -f "$W/ser.log"; cp "$OVMF/OVMF_VARS_4M.fd" "$W/fresh.fd"
        s=$(date +%s.%N)
        qemu-system-x86_64 -accel tcg -cpu max -m 512 -nodefaults -no-user-config -display none -no-reboot \
            -serial "file:$W/ser.log" -initrd "$G/initrd.img" -append "console=ttyS0 panic=-1" "$@" &
        pid=$!
        until grep -aq "Run /init" "$W/ser.log" 2>/dev/null; do sleep 0.05; done
        e=$(date +%s.%N); kill "$pid"; wait "$pid" 2>/dev/null
        printf '%-22s run %d  %.2f s\n' "$name" "$i" "$(echo "$e - $s" | bc)"
    done
}
CODE="if=pflash,format=raw,unit=0,readonly=on,file=$OVMF/OVMF_CODE_4M.fd"
run bios-pc -machine pc -kernel "$G/vmlinux"
run uefi-q35 -machine q35 -drive "$CODE" -drive "if=pflash,format=raw,unit=1,file=$W/fresh.fd" -kernel "$G/vmlinuz"
run uefi-q35-kept-nvram -machine q35 -drive "$CODE" -drive "if=pflash,format=raw,unit=1,file=$W/kept.fd" -kernel "$G/vmlinuz"
echo "# after: load $(cut -d' ' -f1-3 /proc/loadavg)"
