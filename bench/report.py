#!/usr/bin/env python3
"""Turns the raw JSON of one scripts/bench run into the results table and the
latency-vs-throughput plot.

    bench/report.py RAW_DIR OUT_MD OUT_PNG MACHINE_TXT

RAW_DIR holds hongbao-bench --json outputs named
  closed__<scenario>__<target>__<repeat>.json   closed-loop runs
  sweep__<scenario>__<target>__<fraction>__<repeat>.json  open-loop runs
Repeated closed-loop runs are summarised by their median opens/s (the run
with that median supplies the latencies); repeated open-loop runs of one
point by their median open p99 (the range is shown beside it). The ratio
column is hongbao's opens/s over the target's, both from this run of the
script. Prints the Markdown table on stdout as well.

Runs made with --cpu-of (scripts/bench passes the node, PostgreSQL with its
backends and redis-server) also carry the CPU each process spent during the
run; the CPU table divides it by the run's opens.
"""
import glob
import json
import os
import statistics
import subprocess
import sys

TARGETS = ["hongbao", "pg-lock", "pg-update", "redis-lua"]
SCENARIOS = ["hot", "spread", "storm"]


def load(path):
    with open(path) as f:
        return json.load(f)


def median_run(runs):
    runs = sorted(runs, key=lambda d: d["run"]["opens_per_s"])
    return runs[len(runs) // 2]


def fmt_rate(x):
    return f"{x:,.0f}"


def fmt_ms(x):
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def closed_table(raw):
    groups = {}
    for path in glob.glob(os.path.join(raw, "closed__*.json")):
        _, scenario, target, _ = os.path.basename(path)[:-5].split("__")
        groups.setdefault((scenario, target), []).append(load(path))
    lines = [
        "| scenario | target | opens/s | grabs/s | creates/s | open p50 ms | "
        "open p99 ms | open p99.9 ms | hongbao ÷ target | runs | audit |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    summary = {}
    for scenario in SCENARIOS:
        base = groups.get((scenario, "hongbao"))
        hb = median_run(base)["run"]["opens_per_s"] if base else None
        for target in TARGETS:
            runs = groups.get((scenario, target))
            if not runs:
                continue
            d = median_run(runs)
            r = d["run"]
            ops = r["ops"]
            # Creates happen before the clock in hot and spread: their rate
            # is the set-up phase's.
            create = ops["create"]
            if create["answered"] == 0 and d.get("setup"):
                create = d["setup"]["ops"]["create"]
            # A handful of creates (hot wraps one envelope) gives no rate.
            creates = fmt_rate(create["per_s"]) if create["answered"] >= 100 else "—"
            lat = ops["open"]["latency_ms"]
            rates = [x["run"]["opens_per_s"] for x in runs]
            spread = ""
            if len(rates) > 1:
                spread = f" ({fmt_rate(min(rates))}–{fmt_rate(max(rates))})"
            ratio = "—" if target == "hongbao" or not hb else \
                f"{hb / r['opens_per_s']:.2f}×"
            audits = all(x["audit"]["ok"] for x in runs)
            lines.append(
                f"| {scenario} | {target} | {fmt_rate(r['opens_per_s'])}{spread} | "
                f"{fmt_rate(ops['grab']['per_s'])} | {creates} | "
                f"{fmt_ms(lat['p50'])} | {fmt_ms(lat['p99'])} | "
                f"{fmt_ms(lat['p99_9'])} | {ratio} | {len(runs)} | "
                f"{'OK' if audits else '**FAILED**'} |")
            summary[(scenario, target)] = d
    return "\n".join(lines), summary


CPU_LABELS = ["hongbao-node", "postgres", "redis-server", "generator"]


def cpu_cells(d):
    """The CPU columns of one run: µs an open per process, all of them, and
    the share of the machine's cores busy during the run ("—" when the run
    has no CPU figures)."""
    cpu = d["run"].get("cpu")
    if not cpu:
        return ["—"] * (len(CPU_LABELS) + 2)
    per = {p["label"]: p["us_per_open"] for p in cpu["processes"]}
    cells = [f"{per[l]:.1f}" if l in per else "—" for l in CPU_LABELS]
    cells.append(f"{sum(per.values()):.1f}")
    cells.append(f"{cpu['busy'] * 100:.0f} % of {cpu['cores']}")
    return cells


def cpu_table(summary, points):
    """Where the time per open went: the closed-loop runs of the table above
    and the open-loop points, µs of CPU an open per process."""
    rows = []
    for scenario in SCENARIOS:
        for target in TARGETS:
            d = summary.get((scenario, target))
            if d:
                rows.append((f"{scenario}, closed loop", target, d))
    for target in TARGETS:
        for pt in points.get(target, []):
            rows.append((f"{pt[6]}, open loop at {pt[0]:.2f} of the peak",
                         target, pt[10]))
    if not any(d["run"].get("cpu") for (_, _, d) in rows):
        return ""
    head = " | ".join(f"{l} µs" for l in CPU_LABELS)
    lines = [f"| run | target | {head} | all µs an open | cores busy |",
             "|---|---|" + "--:|" * (len(CPU_LABELS) + 1) + "--:|"]
    for (what, target, d) in rows:
        lines.append(f"| {what} | {target} | " + " | ".join(cpu_cells(d)) + " |")
    return "\n".join(lines)


def sweep_data(raw):
    """Per target, one point per fraction: the run with the median open p99
    (and the range of p99 over the runs of that point)."""
    groups = {}
    for path in glob.glob(os.path.join(raw, "sweep__*.json")):
        parts = os.path.basename(path)[:-5].split("__")
        _, scenario, target, fraction = parts[:4]
        groups.setdefault((target, scenario, float(fraction)), []).append(load(path))
    points = {}
    for (target, scenario, fraction), runs in groups.items():
        p99 = lambda d: d["run"]["ops"]["open"]["latency_ms"]["p99"]
        runs.sort(key=p99)
        d = runs[len(runs) // 2]
        r = d["run"]
        lat = r["ops"]["open"]["latency_ms"]
        points.setdefault(target, []).append(
            (fraction, d["rate_target"], r["opens_per_s"], lat["p50"],
             lat["p99"], all(x["audit"]["ok"] for x in runs), scenario,
             p99(runs[0]), p99(runs[-1]), len(runs), d))
    for t in points:
        points[t].sort(key=lambda x: x[0])
    return points


def sweep_table(points):
    if not points:
        return ""
    lines = [
        "| target | scenario | fraction of its closed-loop peak | offered users/s | "
        "achieved opens/s | open p50 ms | open p99 ms | runs | audit |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for target in TARGETS:
        for (frac, rate, achieved, p50, p99, ok, scenario, lo, hi, n, _) in points.get(target, []):
            spread = f" ({fmt_ms(lo)}–{fmt_ms(hi)})" if n > 1 else ""
            lines.append(
                f"| {target} | {scenario} | {frac:.2f} | {fmt_rate(rate)} | "
                f"{fmt_rate(achieved)} | {fmt_ms(p50)} | {fmt_ms(p99)}{spread} | "
                f"{n} | {'OK' if ok else '**FAILED**'} |")
    return "\n".join(lines)


def plot(points, png, workdir):
    if not points:
        return False
    files = []
    for target in TARGETS:
        pts = points.get(target)
        if not pts:
            continue
        name = os.path.join(workdir, f"sweep-{target}.dat")
        with open(name, "w") as f:
            for (_, _, achieved, p50, p99, *_rest) in pts:
                f.write(f"{achieved} {p99} {p50}\n")
        files.append((target, name))
    plots = ", ".join(
        f"'{name}' using 1:2 with linespoints lw 2 title '{t} p99'"
        for t, name in files)
    script = f"""
set terminal png size 1000,620
set output '{png}'
set title 'Open-loop latency vs throughput (spread scenario, same machine, same run)'
set xlabel 'achieved opens/s'
set ylabel 'open latency p99 (ms)'
set logscale xy
set grid
set key top left
set arrow from graph 0, first 20 to graph 1, first 20 nohead dt 2 lc rgb 'gray'
plot {plots}
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    return True


def main():
    raw, out_md, out_png, machine_txt = sys.argv[1:5]
    table, summary = closed_table(raw)
    points = sweep_data(raw)
    sweeps = sweep_table(points)
    cpus = cpu_table(summary, points)
    have_plot = plot(points, out_png, raw)
    machine = open(machine_txt).read().strip() if os.path.exists(machine_txt) else ""
    date = os.path.basename(out_md).split("-results")[0]
    md = [f"# hongbao-bench results, {date}", "",
          "Produced by `scripts/bench` (closed loop: every user of the scenario "
          "at once, 10 000 active users; open loop: a fixed rate of users). "
          "Opens/s counts Open answers that carried a share; ratios divide "
          "hongbao's opens/s by the target's, measured in the same run. "
          "Every run was audited in the target's own store.", "",
          "## Closed loop", "", table, ""]
    if sweeps:
        md += ["## Open loop (latency vs throughput)", "", sweeps, ""]
    if have_plot:
        md += [f"![latency vs throughput]({os.path.basename(out_png)})", ""]
    if cpus:
        md += ["## CPU per open", "",
               "CPU time (user and system) each process spent during the "
               "run, divided by the run's opens; postgres counts the "
               "postmaster and all its backends. The generator shares the "
               "machine with the target.", "", cpus, ""]
    if machine:
        md += ["## Machine", "", "```", machine, "```", ""]
    with open(out_md, "w") as f:
        f.write("\n".join(md))
    print(table)
    if sweeps:
        print()
        print(sweeps)
    if cpus:
        print()
        print(cpus)


if __name__ == "__main__":
    main()
