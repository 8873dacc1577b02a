"""measure.py OUT.json CMD...: run CMD, write wall time, exit status and peak RSS (KiB)."""
import json, resource, subprocess, sys, time
t0 = time.monotonic()
rc = subprocess.call(sys.argv[2:])
dt = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
res = {"rc": rc, "seconds": round(dt, 2), "maxrss_kib": ru.ru_maxrss,
       "user": round(ru.ru_utime, 2), "sys": round(ru.ru_stime, 2)}
with open(sys.argv[1], "w") as f:
    json.dump(res, f)
print(json.dumps(res))
sys.exit(rc)
