#!/bin/sh
# /init of kubevisor's small test guest (busybox initramfs, PID 1).
# Mounts the kernel filesystems, loads the virtio modules, reads the
# NoCloud seed (a disk labelled cidata: meta-data, user-data,
# network-config), configures the network (DHCP or static), applies
# hostname / write_files / ssh keys / runcmd, starts httpd on port 80 and
# acpid (power button -> poweroff), then prints
# "KUBEVISOR-READY <hostname> <ip>" on the serial console and keeps a
# root shell on it.
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /run /tmp /var/run /var/log /root /seed /www
mount -t devpts devpts /dev/pts
exec </dev/console >/dev/console 2>&1
log() { echo "kubevisor-guest: $*"; }

for m in $(cat /etc/modules); do insmod "/lib/modules/$m.ko" || log "insmod $m failed"; done
ip link set lo up
set_hostname() { hostname "$1"; echo "$1" > /etc/hostname; }
set_hostname kubevisor-guest

# ---- seed: the first block device labelled cidata (ISO9660 or vfat)
seed=""
for try in 1 2 3 4 5 6 7 8 9 10; do
  seed=$(findfs LABEL=cidata 2>/dev/null || findfs LABEL=CIDATA 2>/dev/null)
  [ -n "$seed" ] && break
  ls /sys/class/block | grep -q '^vd' && [ "$try" -ge 3 ] && break
  sleep 0.2
done
if [ -n "$seed" ] && mount -o ro "$seed" /seed; then
  log "seed $seed"
  for f in meta-data user-data network-config; do
    [ -f "/seed/$f" ] && awk -f /etc/kubevisor/yaml.awk "/seed/$f" > "/run/$f.flat"
  done
  h=$(sed -n 's/^local-hostname=//p' /run/meta-data.flat 2>/dev/null | head -n 1)
  [ -n "$h" ] && set_hostname "$h"
else
  log "no seed"
fi

# ---- network: network-config v2 ethernets, else DHCP on eth0
ifname_for() {   # MAC or name -> kernel interface name
  if [ -n "$1" ]; then
    for i in /sys/class/net/*; do
      [ "$(cat "$i/address")" = "$1" ] && { echo "${i##*/}"; return; }
    done
  fi
  [ -e "/sys/class/net/$2" ] && echo "$2" || echo eth0
}
net_iface() {    # MAC NAME DHCP4 ADDRESS/PREFIX GATEWAY
  dev=$(ifname_for "$1" "$2")
  ip link set "$dev" up
  if [ -n "$4" ]; then
    ip addr add "$4" dev "$dev"
    [ -n "$5" ] && ip route add default via "$5" dev "$dev"
  elif [ "$3" = true ] || [ "$3" = yes ]; then
    udhcpc -i "$dev" -s /etc/kubevisor/udhcpc.sh -t 10 -T 1 -A 2 -b -S
  fi
}
if [ -s /run/network-config.flat ]; then
  awk -v mode=net -f /etc/kubevisor/cloudinit.awk /run/network-config.flat > /run/net.sh
  . /run/net.sh
elif [ -e /sys/class/net/eth0 ]; then
  net_iface "" eth0 true "" ""
fi

# ---- user-data: cloud-config (write_files, keys, hostname, runcmd) or a script
if [ -f /seed/user-data ]; then
  if head -n 1 /seed/user-data | grep -q '^#cloud-config'; then
    awk -v mode=user -f /etc/kubevisor/cloudinit.awk /run/user-data.flat > /run/user.sh
    awk -v mode=runcmd -f /etc/kubevisor/cloudinit.awk /run/user-data.flat > /run/runcmd.sh
    . /run/user.sh
    sh /run/runcmd.sh || log "runcmd failed: $?"
  elif head -n 1 /seed/user-data | grep -q '^#!'; then
    cp /seed/user-data /run/user-script && chmod +x /run/user-script && /run/user-script
  fi
fi

# ---- services: HTTP on 80 (the "guest answers on TCP" check), ACPI power button
hostname > /www/index.html
httpd -p 80 -h /www
acpid -c /etc/acpi -l /run/acpid.log

ip4=$(ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }')
echo "KUBEVISOR-READY $(hostname) ${ip4:-none}"

while true; do
  setsid cttyhack sh -l
  sleep 1
done
