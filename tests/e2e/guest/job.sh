# e2e capture job: on the out disk as /out/fastdump-job.sh, sourced by the
# initrd's /init in the capture kernel with the out disk mounted on /out.
# Each line of /out/e2e/runs.txt is NAME|COMMAND...; "@VMCORE" and "@OUT" in
# COMMAND stand for /proc/vmcore and /out/NAME.
echo "e2e-job: capture kernel $(uname -r) up at $(cut -d' ' -f1 /proc/uptime) s"
echo "e2e-job: $(grep -E 'MemTotal|MemFree' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"
cat /proc/meminfo > /out/e2e/capture-meminfo
: > /out/e2e/results.txt
while IFS='|' read -r name cmd; do
    [ -n "$name" ] || continue
    case "$name" in \#*) continue ;; esac
    cmd=$(echo "$cmd" | sed "s#@VMCORE#/proc/vmcore#g; s#@OUT#/out/$name#g")
    echo "e2e-job: run $name: $cmd"
    sync
    fdpython /out/e2e/measure.py /out/e2e/measure.$name.json sh -c "$cmd" \
        > /out/e2e/log.$name 2>&1
    rc=$?
    sync
    echo "e2e-job: done $name rc=$rc $(cat /out/e2e/measure.$name.json 2>/dev/null)"
    tail -n 5 /out/e2e/log.$name | sed 's/^/e2e-job:   | /'
    echo "$name $rc" >> /out/e2e/results.txt
done < /out/e2e/runs.txt
df -k /out | tail -1 | sed 's/^/e2e-job: df /'
sync
echo "e2e-job: DONE"
