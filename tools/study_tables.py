#!/usr/bin/env python3
"""study_tables.py REPORT.csv: the Markdown tables of docs/results.md from the
report of configs/study-fashion-mnist.sweep (cilscale report DIR --csv, or
DIR/report/report.csv): one table per architecture and budget, a row per
configuration (mean +- sample std over the seeds), psi's and width-only's
grid points named, and whether the best row's lead exceeds the seed spread."""
import csv, re, sys

rows = [r for r in csv.DictReader(open(sys.argv[1])) if int(r["runs"]) > 1]
lab = re.compile(r"lucir (\S+) (\S+) (\S+) w=(\S+) \[([\d,]+)\]( keep-res)? \((\d+) seeds\)")
ref = {"resnet18": "2,2,2,2", "mobilenetv2": "1,2,3,4,3,3,1", "shufflenetv2": "4,8,4"}
tables = {}
for r in rows:
    m = lab.match(r["label"])
    if not m:
        continue
    how, budget, arch, w, depths, keep, seeds = m.groups()
    if how == "widest":
        name = "grid: depths [%s]" % depths
        if set(depths.split(",")) == {"1"}:
            name += " = **psi**"
        if depths == ref[arch]:
            name += " = width-only"
    else:
        name = how + (", input kept" if keep else ", input scaled")
    tables.setdefault((arch, budget), []).append((name, depths, w, r, seeds))

def f(r, k):
    return "%s ± %s" % (r[k], r[k + "_std"]) if r[k] else "-"

for (arch, budget), items in tables.items():
    print("\n**%s, budget %s** (%s seeds each)\n" % (arch, budget, items[0][4]))
    print("| configuration | depths | w | params | avg inc top-1 | avg inc top-5 | last top-1 | forgetting |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    items.sort(key=lambda t: -float(t[3]["avg_inc_top1"]))
    for name, depths, w, r, _ in items:
        print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (name, depths, w, format(int(r["params"]), ","),
              f(r, "avg_inc_top1"), f(r, "avg_inc_top5"), f(r, "last_top1"), f(r, "forgetting")))
    best, second = items[0][3], items[1][3]
    gap = float(best["avg_inc_top1"]) - float(second["avg_inc_top1"])
    spread = max(float(best["avg_inc_top1_std"]), float(second["avg_inc_top1_std"]))
    print("\nBest by average incremental top-1: %s, %.2f points ahead of %s; the larger seed std of the two is "
          "%.2f, so the lead is %s the seed spread." % (items[0][0], gap, items[1][0], spread,
                                                       "larger than" if gap > spread else "within"))
