# Load the capture kernel (kexec_load) and unmount the record disk, so the
# capture kernel can mount it cleanly.  Called by workload.py.
cmdline=""
for w in $(cat /proc/cmdline); do
    case "$w" in crashkernel=*|panic=*) ;; *) cmdline="$cmdline $w" ;; esac
done
cmdline="${cmdline# } nr_cpus=1 irqpoll reset_devices panic=1"
sync
umount /out || { echo "e2e-arm: umount /out failed"; exit 1; }
echo "e2e-arm: kexec -p with: $cmdline"
kexec -p /work/boot/vmlinuz --initrd=/work/boot/initrd.img --append="$cmdline" || {
    echo "e2e-arm: kexec -p failed"; exit 1; }
loaded=$(cat /sys/kernel/kexec_crash_loaded 2>/dev/null)
echo "e2e-arm: kexec_crash_loaded=$loaded"
[ "$loaded" = 1 ]
