# /etc/fastdump/first.sh of the e2e initrd: sourced by /init in the first kernel.
# Mounts the work disk (ext4, label fdwork) and hands over to the script on it.
dev=$(wait_dev LABEL=fdwork 30) || { log "e2e: work disk (LABEL=fdwork) did not appear"; finish; }
mkdir -p /work
mount -t ext4 "$dev" /work || { log "e2e: cannot mount $dev"; finish; }
if [ -f /work/e2e/first.sh ]; then
    . /work/e2e/first.sh
else
    log "e2e: /work/e2e/first.sh missing"
fi
