# e2e first-kernel driver (on the work disk as /work/e2e/first.sh, sourced by the initrd).
echo "e2e-first: kernel $(uname -r) up at $(cut -d' ' -f1 /proc/uptime) s"
echo "e2e-first: cmdline $(cat /proc/cmdline)"
echo "e2e-first: crash kernel reservation $(cat /sys/kernel/kexec_crash_size 2>/dev/null) bytes"
out=$(wait_dev LABEL=fdout 30) || { log "e2e: out disk (LABEL=fdout) did not appear"; finish; }
mkdir -p /out /mnt/tmpfs
mount -t ext4 "$out" /out || { log "e2e: cannot mount $out"; finish; }
mkdir -p /out/first
mount -t tmpfs -o size=90% tmpfs /mnt/tmpfs
cat /proc/cmdline > /out/first/cmdline
# a secret in a kernel global the workload controls, the host name (init_uts_ns.name.nodename),
# for tests/e2e/test_erase_real.py to erase with makedumpfile's filter config
secret="fdsecret-$(cut -c1-8 /proc/sys/kernel/random/uuid)$(cut -c25-36 /proc/sys/kernel/random/uuid)"
echo "$secret" > /proc/sys/kernel/hostname
echo "$secret" > /out/first/nodename
uname -r > /out/first/release
cat /proc/iomem > /out/first/iomem 2>/dev/null
fdpython /work/e2e/workload.py /work/e2e/config.json
echo "e2e-first: workload exit status $? (should not return)"
finish
