"""bench/RESULTS.md from one run's results: the targets of the performance issue judged on
this run's rows, where each fastdump row's time went, and an estimate of its physical bound.

Every number comes from the run (``results.json``); nothing here is typed in by hand, so
``python3 -m bench.run --results`` regenerates the whole file, and
``python3 -m bench.report [results.json [RESULTS.md]]`` renders it again from a run's results.
"""

import datetime
import json
import os
import platform
import sys

GiB = 1 << 30

#: (target text, input kinds, level, fastdump codec, makedumpfile codec, least ratio)
SPEED_TARGETS = [
    ("`-l -d 31`, 16 GiB real guest", ("bigreal",), 31, "lzo", "lzo", 2.5),
    ("`-c -d 31`, 16 GiB real guest", ("bigreal",), 31, "zlib", "zlib", 2.5),
    ("`-z -d 1`, dense 2 GiB real guests", ("real",), 1, "zstd", "zstd", 2.0),
    ("`-l -d 1`, dense 2 GiB real guests", ("real",), 1, "lzo", "lzo", 2.0),
]
RSS_LIMIT_MIB = 64
#: cost per GiB counts as flat while no larger machine costs more than this much of the smallest's
FLAT_SLACK = 1.10
#: inputs whose cost per GiB is compared with each other: alike but for their size
FAMILIES = {"real": "real guests", "bigreal": "real guests", "kernel": "dense synthetic kernels",
            "sparse": "sparse synthetic kernels", "huge": "sparse synthetic kernels"}


#: bytes of one ``struct page`` (x86_64 kernels without debug options): what pass 1 reads per pfn
STRUCT_PAGE = 64


def bound_seconds(entry, run, cores):
    """An estimate of the least wall time the row's work can take on ``cores`` cores: the bytes
    that must be read (the pages fastdump copied, and the struct pages of every pfn when the
    level needs classification), at the speed of reading the source into nothing (one core),
    plus the kept pages through the codec at the per-core speed measured on a sample of this
    input (not on the kept pages themselves), all spread over every core.  None without
    fastdump's statistics for the same codec and level, or without the speeds."""
    fd = fastdump_row(entry, run["level"], run["codec"], cores)
    c = entry.get("ceilings")
    if not fd or "bytes_read" not in fd or not c or c.get("read_MBps", 0) <= 0:
        return None
    mem_map = fd.get("pages_scanned", 0) * STRUCT_PAGE if run["level"] & ~1 else 0
    read = (fd["bytes_read"] + mem_map) / (c["read_MBps"] * 1e6)
    codec = c["codec"].get(run["codec"])
    if codec and codec["per_core_MBps"] <= 0:
        return None
    work = fd["pages_kept"] * 4096 / (codec["per_core_MBps"] * 1e6) if codec else 0.0
    return (read + work) / cores


def fastdump_row(entry, level, codec, cores):
    """The input's fastdump row that ran at this level and codec on every core, or None."""
    return next((r for _, r in _fastdump_rows(entry, level, codec, cores) if r.get("ok")), None)


def best_makedumpfile(entry, level, codec):
    """(name, row) of the fastest makedumpfile row at this level and codec (one thread), or None."""
    rows = [(n, r) for n, r in entry["runs"].items() if r.get("ok") and r["group"].startswith("makedumpfile")
            and r["level"] == level and r["codec"] == codec and r["threads"] == 1]
    return min(rows, key=lambda nr: nr[1]["wall"]) if rows else None


def _fastdump_rows(entry, level=None, codec=None, threads=None):
    """(name, row) of the input's fastdump rows that match, failed ones included."""
    return [(n, r) for n, r in entry["runs"].items() if r["group"] == "fastdump"
            and (level is None or r["level"] == level) and (codec is None or r["codec"] == codec)
            and (threads is None or r["threads"] == threads)]


def judge_speed(results):
    """Each speed target on every input of its kind: met only where every such input has both
    rows and every ratio reaches it; a failed or missing row is shown and never counts as met."""
    cores = results["machine"]["cores"]
    lines = []
    for text, kinds, level, fcodec, mcodec, least in SPEED_TARGETS:
        parts, ratios, gaps = [], [], 0
        for entry in results["inputs"]:
            if entry["kind"] not in kinds:
                continue
            fd, mdf = fastdump_row(entry, level, fcodec, cores), best_makedumpfile(entry, level, mcodec)
            if not fd:
                failed = _fastdump_rows(entry, level, fcodec, cores)
                parts.append(f"{entry['name']}: fastdump {'failed' if failed else 'not run'}")
                gaps += 1
            elif not mdf:
                parts.append(f"{entry['name']}: no makedumpfile row at this codec and level")
                gaps += 1
            else:
                mname, m = mdf
                ratios.append(m["wall"] / fd["wall"])
                parts.append(f"{entry['name']}: {ratios[-1]:.2f}x ({fd['wall']:.2f} s against {mname} "
                             f"{m['wall']:.2f} s)")
        if not parts:
            lines.append(f"| {text}: at least {least}x | not measured in this run (no such input) | – |")
            continue
        verdict = "no" if any(r < least for r in ratios) else "–" if gaps or not ratios else "yes"
        lines.append(f"| {text}: at least {least}x the fastest makedumpfile | {'; '.join(parts)} | {verdict} |")
    return lines


def cpu_caps(results):
    """For each speed target's rows: the most that fastdump's own CPU time allows.  On a
    machine of ``cores`` CPUs a process's CPU time is at most its wall time x cores; outside
    the dump (interpreter, imports, exit: ``o`` s of wall) fastdump runs one thread, so it
    spends at most ``o`` CPU-s there.  Its wall is therefore at least o + (CPU-s - o) / cores,
    and its ratio against a makedumpfile row at most that row's wall over this.  A target
    above that cap cannot be met by spreading the same work better over the cores, only by
    spending less CPU: the last column is the CPU-s the target leaves fastdump (with the same
    time outside the dump)."""
    cores = results["machine"]["cores"]
    lines = ["| target | input | fastdump wall s, CPU-s, outside the dump s | fastest makedumpfile wall s, "
             f"CPU-s | ratio | most this CPU allows on {cores} cores | CPU-s the target leaves fastdump |",
             "|---|---|---|---|---|---|---|"]
    for text, kinds, level, fcodec, mcodec, least in SPEED_TARGETS:
        for entry in results["inputs"]:
            if entry["kind"] not in kinds:
                continue
            fd, mdf = fastdump_row(entry, level, fcodec, cores), best_makedumpfile(entry, level, mcodec)
            if not fd or not mdf or fd.get("cpu", 0) <= 0 or "cpu" not in mdf[1]:
                continue
            mname, m = mdf
            outside = min((fd.get("phases") or {}).get("outside", 0.0), fd["cpu"])
            least_wall = outside + (fd["cpu"] - outside) / cores
            leaves = outside + (m["wall"] / least - outside) * cores
            lines.append(f"| {text}, {least}x | {entry['name']} | {fd['wall']:.2f}, {fd['cpu']:.2f}, "
                         f"{outside:.3f} | {mname} {m['wall']:.2f}, {m['cpu']:.2f} | "
                         f"{m['wall'] / fd['wall']:.2f}x | {m['wall'] / least_wall:.2f}x | {leaves:.2f} |")
    return lines


def judge_cost_per_gib(results):
    """fastdump's wall seconds per GiB of RAM at -d 31 (each codec at the machine's threads),
    within each family of inputs that differ only in size: the smallest against each larger.
    A failed row of the family leaves its verdict open."""
    cores = results["machine"]["cores"]
    series, failed = {}, set()
    for entry in results["inputs"]:
        family = FAMILIES.get(entry["kind"])
        if not family:
            continue
        gib = entry["ram"] / GiB
        for _, r in _fastdump_rows(entry, 31, None, cores):
            if r.get("ok"):
                series.setdefault((family, r["codec"]), []).append((gib, r["wall"] / gib, entry["name"]))
            else:
                failed.add((family, r["codec"]))
    rows = []
    for key, pts in sorted(series.items()):
        pts.sort()
        if len(pts) < 2:
            continue
        flat = all(c <= pts[0][1] * FLAT_SLACK for _, c, _ in pts[1:])
        shown = ", ".join(f"{n} {c * 1000:.1f} ms" for _, c, n in pts)
        verdict = "–" if key in failed else "yes" if flat else "no"
        rows.append(f"| cost per GiB of RAM at `-d 31` flat or falling ({key[0]}, {key[1]}) | {shown} | {verdict} |")
    return rows or ["| cost per GiB of RAM at `-d 31` flat or falling | not measured: no family with two sizes | – |"]


def judge_rss_and_size(results):
    """Peak RSS over every fastdump row; fastdump's output size over makedumpfile's at the
    same codec and level, the largest ratio of each input."""
    worst_rss, sizes, whole, unmeasured = (0, ""), [], [], 0
    for entry in results["inputs"]:
        worst, worst_file = (0.0, ""), (0.0, "")
        for name, r in _fastdump_rows(entry):
            if not r.get("ok") or not r.get("rss_kb"):
                unmeasured += 1
                continue
            if r["rss_kb"] > worst_rss[0]:
                worst_rss = (r["rss_kb"], f"{entry['name']} {name}")
            for base, ratio in r.get("size_vs_pages", {}).items():
                if ratio > worst[0]:
                    worst = (ratio, f"{name.split(' t')[0]} against {base}")
            for base, ratio in r.get("size_vs", {}).items():
                if ratio > worst_file[0]:
                    worst_file = (ratio, f"{name.split(' t')[0]} against {base}")
        if worst[1]:
            sizes.append((entry["name"], *worst))
        if worst_file[1]:
            whole.append((entry["name"], *worst_file))
    rows = []
    if worst_rss[1]:
        rss_mib = worst_rss[0] / 1024
        more = f"; {unmeasured} fastdump rows failed or unmeasured" if unmeasured else ""
        verdict = "no" if rss_mib > RSS_LIMIT_MIB else "–" if unmeasured else "yes"
        rows.append(f"| peak RSS at most {RSS_LIMIT_MIB} MiB | largest {rss_mib:.0f} MiB ({worst_rss[1]}){more} | "
                    f"{verdict} |")
    else:
        rows.append(f"| peak RSS at most {RSS_LIMIT_MIB} MiB | not measured in this run | – |")
    if sizes:
        shown = "; ".join(f"{n}: {ratio:.5f} ({what})" for n, ratio, what in sizes)
        files = "; ".join(f"{n}: {ratio:.5f} ({what})" for n, ratio, what in whole)
        rows.append(f"| output no larger than makedumpfile's at the same codec and level, page for page: "
                    f"each file without the pages only it stores, largest ratio of each input (whole files "
                    f"below) | {shown}. Whole files: {files} | {'yes' if all(r <= 1.0 for _, r, _ in sizes) else 'no'} |")
    return rows


def time_split(results):
    """Where each fastdump row's wall time went, from its own ``--stats-json``."""
    cores = results["machine"]["cores"]
    lines = ["| input | fastdump row | wall s | outside the dump (interpreter, imports, exit) | open the source "
             "| pass 1: classify | pass 2: the rest (room check, read, compress, write) | estimated bound s |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in results["inputs"]:
        for name, r in sorted(entry["runs"].items()):
            ph = r.get("phases")
            if not (r.get("ok") and r["group"] == "fastdump" and ph and r["threads"] == cores):
                continue
            b = bound_seconds(entry, r, cores)
            lines.append(f"| {entry['name']} | {name} | {r['wall']:.2f} | {ph['outside']:.3f} | {ph['open']:.3f} | "
                         f"{ph['classify']:.3f} | {ph['write']:.3f} | {'' if b is None else f'{b:.3f}'} |")
    return lines


def input_table(entry, cores):
    c = entry.get("ceilings") or {"codec": {}, "read_MBps": 0}
    lines = [f"### {entry['name']} ({entry['ram'] / GiB:.3g} GiB RAM)", "",
             "ceilings: " + ", ".join(f"{k} {v['per_core_MBps']:.0f} MB/s per core" for k, v in c["codec"].items())
             + f"; reading the source into nothing {c['read_MBps']:.0f} MB/s", "",
             "| contender | wall s | cpu s | peak RSS MiB | output MB | estimated bound s | vs makedumpfile (same level) |",
             "|---|---|---|---|---|---|---|"]
    for name, r in sorted(entry["runs"].items(), key=lambda kv: kv[1].get("wall", 1e9)):
        if not r.get("ok"):
            error = " ".join(r.get("error", "").split()).replace("|", "/")[:80]
            lines.append(f"| {name} | failed: {error} | | | | | |")
            continue
        b = bound_seconds(entry, r, cores)
        vs = ", ".join(f"{k} {v}x" for k, v in r.get("speedup", {}).items())
        lines.append(f"| {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss_kb'] / 1024:.0f} | "
                     f"{r['bytes_out'] / 1e6:.1f} | {'' if b is None else f'{b:.3f}'} | {vs} |")
    return lines + [""]


def render(results, command=None, when=None):
    m = results["machine"]
    command = command or results.get("command", "python3 -m bench.run --results")
    when = when or results.get("date") or datetime.date.today().isoformat()
    lines = ["# fastdump bench results", "",
             f"Made by `{command}` on {when}: {m['cores']} cores, {m.get('os') or platform.platform()}, "
             f"Python {m['python']}. Every number below comes from that one run; nothing is typed in "
             "by hand. Contenders ran alternately, in a shuffled order, and each figure is the median "
             f"of the repetitions. Dumps were written to {results.get('scratch', 'the scratch directory')}; "
             "each input's read speed below says how much of it the page cache held.", "",
             "makedumpfile builds in the run:", ""]
    lines += [f"- {b['name']} {b['version']}: lzo {'yes' if b['lzo'] else 'no'}, zstd {'yes' if b['zstd'] else 'no'}"
              for b in results["makedumpfile"]]
    lines += [f"- note: {n}" for n in results["notes"]]
    lines += ["", "## Targets of the performance issue", "",
              "Ratios are makedumpfile's wall time over fastdump's (fastdump on every core), against the "
              "fastest makedumpfile build of the run at the same codec and level.", "",
              "| target | measured | met? |", "|---|---|---|"]
    lines += judge_speed(results) + judge_cost_per_gib(results) + judge_rss_and_size(results)
    caps = cpu_caps(results)
    if len(caps) > 2:
        lines += ["", "### What fastdump's CPU time allows", "",
                  f"With {m['cores']} cores, a process's wall time is at least its CPU time over "
                  f"{m['cores']}, and outside the dump (interpreter, imports, exit) fastdump runs one "
                  "thread. So its wall time is at least the time outside the dump plus the rest of its "
                  f"CPU-s (user and system) over {m['cores']}, and its ratio at most the makedumpfile "
                  "row's wall time over that. This holds for each run; below it is applied to the "
                  "medians of the same repetitions, whose times GNU time gives to 0.01 s. A target "
                  "above this cap needs fastdump to spend less CPU, not to use the cores better.",
                  ""] + caps
    lines += ["", "## Where fastdump's time goes", "",
              "From each run's own `--stats-json` (`phase_seconds`), medians over the repetitions; "
              "outside the dump is the wall time the process took beyond the dump itself. The estimated "
              "bound is the least time the same work could take here: the bytes that must be read (the "
              f"pages fastdump copied, and {STRUCT_PAGE} bytes of struct page per pfn when the level "
              "classifies) at the speed of reading this source into nothing, plus the kept pages through "
              "the codec at the per-core speed measured on a sample of this input's pages (not on the "
              "kept ones, so it is an estimate, not a proof), spread over every core.", ""]
    lines += time_split(results)
    lines += ["", "## Every row", ""]
    for entry in results["inputs"]:
        lines += input_table(entry, m["cores"])
    lines += ["Plots of this run: `bench/out/cost_per_gib.png` (seconds per GiB of RAM at `-d 31`, "
              "2 GiB to 1 TiB) and `bench/out/throughput.png`."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Render RESULTS.md again from a run's results.json (default bench/out/results.json)."""
    args = sys.argv[1:] if argv is None else argv
    here = os.path.dirname(os.path.abspath(__file__))
    src = args[0] if args else os.path.join(here, "out", "results.json")
    dest = args[1] if len(args) > 1 else os.path.join(here, "RESULTS.md")
    with open(src) as f:
        results = json.load(f)
    with open(dest, "w") as f:
        f.write(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
