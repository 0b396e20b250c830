#!/bin/bash
# Raspberry Pi OS Bookworm first boot: runs once from cmdline.txt (systemd.run=...), before the
# network is up, so it only unpacks the project and enables a one-shot unit that runs the installer
# once the network is online. README "First boot" has the steps.
set -euo pipefail

BOOT=/boot/firmware
SRC=/opt/scream-detector/src

mkdir -p "$SRC"
tar -xzf "$BOOT/scream-detector.tar.gz" -C "$SRC"
install -m 0644 "$SRC/deploy/firstboot/scream-firstboot.service" /etc/systemd/system/scream-firstboot.service
ln -sf /etc/systemd/system/scream-firstboot.service /etc/systemd/system/multi-user.target.wants/scream-firstboot.service

# Remove this script's hook from the kernel command line so it never runs again.
sed -i 's| systemd\.run[^ ]*||g; s| systemd\.unit=kernel-command-line\.target||g' "$BOOT/cmdline.txt"
rm -f "$BOOT/scream-firstrun.sh"
exit 0
