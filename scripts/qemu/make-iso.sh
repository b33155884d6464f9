#!/usr/bin/env bash
# Packs DIR/bootc-agent.kernel + DIR/bootc-agent.initramfs into DIR/bootc-agent.iso, a UEFI
# El Torito ISO for virtual media: systemd-boot in a FAT boot image with one loader entry.
#   scripts/qemu/make-iso.sh DIR
# ISO_CMDLINE sets the entry's kernel command line (default: serial + VGA console only; add
# ipa-api-url=… etc., or leave it out and boot with the agent's pre-set token/vmedia config).
set -euo pipefail
DIR=$(realpath "$1")
CMDLINE=${ISO_CMDLINE:-console=tty0 console=ttyS0,115200}
export MTOOLS_SKIP_CHECK=1
for t in xorriso mkfs.vfat mcopy; do command -v "$t" >/dev/null || { echo "make-iso: $t not installed (xorriso dosfstools mtools)" >&2; exit 1; }; done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
SDBOOT=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
if [ ! -f "$SDBOOT" ]; then
  # Not installed on the host: take it from Debian's package without installing it.
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root systemd-boot-efi >/dev/null && dpkg-deb -x systemd-boot-efi_*.deb x)
  SDBOOT=$tmp/x/usr/lib/systemd/boot/efi/systemd-bootx64.efi
fi
[ -f "$SDBOOT" ] || { echo "make-iso: systemd-bootx64.efi not found (apt-get install systemd-boot-efi)" >&2; exit 1; }
kib=$(( ( $(stat -c %s "$DIR/bootc-agent.kernel") + $(stat -c %s "$DIR/bootc-agent.initramfs") + $(stat -c %s "$SDBOOT") ) / 1024 + 4096 ))
img=$tmp/iso/efiboot.img
mkdir -p "$tmp/iso"
mkfs.vfat -C -n BOOTC-AGENT "$img" "$kib" >/dev/null
printf 'default bootc-agent.conf\ntimeout 3\n' > "$tmp/loader.conf"
printf 'title bootc-agent ramdisk\nlinux /bootc-agent.kernel\ninitrd /bootc-agent.initramfs\noptions %s\n' "$CMDLINE" > "$tmp/entry.conf"
mmd -i "$img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$img" "$SDBOOT" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$img" "$tmp/loader.conf" ::/loader/loader.conf
mcopy -i "$img" "$tmp/entry.conf" ::/loader/entries/bootc-agent.conf
mcopy -i "$img" "$DIR/bootc-agent.kernel" ::/bootc-agent.kernel
mcopy -i "$img" "$DIR/bootc-agent.initramfs" ::/bootc-agent.initramfs
xorriso -as mkisofs -quiet -o "$DIR/bootc-agent.iso" -R -J -V BOOTC_AGENT \
  -e efiboot.img -no-emul-boot "$tmp/iso" 2>/dev/null
echo "[make-iso] $DIR/bootc-agent.iso ($(du -m --apparent-size "$DIR/bootc-agent.iso" | cut -f1) MiB; cmdline: $CMDLINE)"
