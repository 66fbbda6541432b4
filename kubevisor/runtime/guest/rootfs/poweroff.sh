#!/bin/sh
# acpid action for the power button: a clean, immediate power-off.
echo "kubevisor-guest: power button, powering off" > /dev/console
sync
poweroff -f
