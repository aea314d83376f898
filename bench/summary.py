#!/usr/bin/python3
"""docs/benchmarks/summary.csv: one row per workload and variant, from each
workload folder's results.json (bench/report.py's), for plots and for anyone
comparing runs.

Columns: workload (the folder's name), variant, default (yes on the default
freeze policy's rows), seeds, fixed_budget_speedup and time_to_target_speedup
(paired means over seeds of full fine-tuning's time over the variant's;
time to target empty unless every seed reached it), best_accuracy_delta_pt
(the mean over seeds of the best accuracy's difference from full fine-tuning
with the same seed, in points) and reached_target_seeds (seeds whose
validation accuracy reached full's best less 0.3 points).

    /usr/bin/python3 bench/summary.py [--benchmarks docs/benchmarks] [--default VARIANT]
"""
import argparse
import csv
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = ("quick", "mini-24k", "small-12k", "fortunes-mini")
# The variant name (bench/finetune_bench.py's) of what `--freeze=autofreeze`
# does with no options.
DEFAULT_VARIANT = "autofreeze+bf16"
COLUMNS = ("workload", "variant", "default", "seeds", "fixed_budget_speedup", "time_to_target_speedup",
           "best_accuracy_delta_pt", "reached_target_seeds")


def fmt(x, pattern="%.2f"):
    return "" if x is None else pattern % x


def rows(benchmarks, default_variant):
    out = []
    for workload in WORKLOADS:
        path = os.path.join(benchmarks, workload, "results.json")
        if not os.path.exists(path):
            continue
        doc = json.load(open(path))
        for s in doc["summaries"]:
            seeds = len(s["seeds"])
            reached = s.get("runs_reaching_target")
            if s["variant"] == "full":
                fixed, to_target, delta = 1.0, 1.0 if reached == seeds else None, 0.0
            else:
                fixed = s.get("speedup_fixed_budget")
                to_target = s.get("speedup_time_to_target")
                if reached != seeds or s.get("speedup_time_to_target_seeds") != seeds:
                    to_target = None
                delta = s.get("paired_delta_points_mean")
            out.append({"workload": workload, "variant": s["variant"],
                        "default": "yes" if s["variant"] == default_variant else "no",
                        "seeds": seeds, "fixed_budget_speedup": fmt(fixed),
                        "time_to_target_speedup": fmt(to_target),
                        "best_accuracy_delta_pt": fmt(delta, "%+.2f"),
                        "reached_target_seeds": "" if reached is None else reached})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default=os.path.join(ROOT, "docs", "benchmarks"))
    ap.add_argument("--default", default=DEFAULT_VARIANT, help="the default policy's variant name")
    ap.add_argument("--out", help="(default: BENCHMARKS/summary.csv)")
    args = ap.parse_args()
    out = args.out or os.path.join(args.benchmarks, "summary.csv")
    table = rows(args.benchmarks, args.default)
    with open(out + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    os.replace(out + ".tmp", out)
    print(f"{out}: {len(table)} rows")


if __name__ == "__main__":
    main()
