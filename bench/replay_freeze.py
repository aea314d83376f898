#!/usr/bin/python3
"""Replays a recorded AutoFreeze run under another rule and estimates its
training time, without training.

A run saved by bench/finetune_bench.py keeps every decision point: each
layer's change rate eta(l) = |G_prev(l) - G(l)| / G_prev(l) and the threshold.
This tool re-decides each point under another percentile or option and
estimates the time from the run's own step times by frozen depth
(seconds_by_depth over the steps spent at each depth); a depth the run never
reached takes the nearest measured one's time scaled by the layers left.

    /usr/bin/python3 bench/replay_freeze.py docs/benchmarks/quick/runs/autofreeze+bf16@seed0.json \\
        --percentile 50 70 90 --through --cap 1 --start 0.5 --keep 1

What it cannot know: a layer frozen in the recorded run has no change rates
after it froze, so a replay that keeps it training longer treats it as
stable (eta 0) and freezes it at its next point; and freezing differently
changes later gradients, which the replay keeps as recorded. So it ranks
rules by their schedule and time; accuracy needs a real run.
"""
import argparse
import json
import math
import os


def percentile(values, p):
    """numpy.percentile with linear interpolation (as the daemon's policy)."""
    if not values:
        return 0.0
    v = sorted(values)
    rank = min(max(p, 0.0), 100.0) / 100.0 * (len(v) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (rank - lo)


def replay(decisions, layers, p, through=False, cap=0, start=0.0, total_steps=0, keep=1):
    """[(step, frozen_after)] under percentile p, from the recorded change rates;
    nothing freezes before the share `start` of `total_steps`, and the last
    `keep` layers never do."""
    frozen, out = 0, []
    for d in decisions:
        if d.get("baseline"):
            continue
        if total_steps and d["step"] < start * total_steps:
            continue
        eta = list(d.get("layer_change_rates", [])) + [0.0] * layers
        eta = eta[:layers]
        threshold = percentile(eta[frozen:], p)
        first = frozen
        while first < layers - 1 and eta[first] < threshold:
            first += 1
        if through:
            first += 1
        first = min(first, layers - max(1, keep))
        if cap > 0:
            first = min(first, frozen + cap)
        if first > frozen:
            frozen = first
            out.append((d["step"], frozen))
    return out


def step_times(run, steps_per_epoch, total_steps, layers):
    """Mean seconds a step at each frozen depth, from the run itself."""
    depth_at = [0] * (total_steps + 1)
    frozen, freezes = 0, sorted((f["step"], f["frozen_after"]) for f in run["freezes"])
    i = 0
    for s in range(1, total_steps + 1):
        while i < len(freezes) and freezes[i][0] < s:
            frozen = freezes[i][1]
            i += 1
        depth_at[s] = frozen
    counts = [0] * (layers + 1)
    for s in range(1, total_steps + 1):
        counts[depth_at[s]] += 1
    seconds = run.get("seconds_by_depth", {})
    known = {k: float(seconds[str(k)]) / counts[k] for k in range(layers + 1) if str(k) in seconds and counts[k]}
    if not known:
        raise SystemExit("the run has no step times by depth (seconds_by_depth)")
    # Depths the run never reached: the nearest measured one, scaled by the
    # layers left to train (the head counted as half a layer).
    def guess(k):
        j = min(known, key=lambda d: (abs(d - k), d))
        return known[j] * (layers - k + 0.5) / (layers - j + 0.5)
    return [known.get(k, guess(k)) for k in range(layers + 1)], known


def estimate(schedule, per_step, total_steps):
    frozen, i, t = 0, 0, 0.0
    for s in range(1, total_steps + 1):
        while i < len(schedule) and schedule[i][0] < s:
            frozen = schedule[i][1]
            i += 1
        t += per_step[frozen]
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a runs/*.json file of finetune_bench.py")
    ap.add_argument("--percentile", type=float, nargs="+", default=[50.0])
    ap.add_argument("--through", action="store_true", help="also freeze the first layer at or above")
    ap.add_argument("--cap", type=int, default=0, help="layers one decision may freeze (0: no cap)")
    ap.add_argument("--start", type=float, default=0.0, help="no freezing before this share of training")
    ap.add_argument("--keep", type=int, default=1, help="the last K layers never freeze")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    run = json.load(open(args.run))
    workload = json.load(open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.run))),
                                           "workload.json")))
    layers = workload["layers"]
    steps_per_epoch = math.ceil(workload["train_rows"] / workload["batch_size"])
    total = steps_per_epoch * workload["epochs"]
    per_step, known = step_times(run, steps_per_epoch, total, layers)
    recorded = [(f["step"], f["frozen_after"]) for f in run["freezes"]]
    rows = [{"rule": "recorded", "schedule": recorded, "seconds": estimate(recorded, per_step, total)}]
    for p in args.percentile:
        schedule = replay(run["decisions"], layers, p, args.through, args.cap, args.start, total, args.keep)
        name = (f"percentile {p:g}" + (", through" if args.through else "") + (f", cap {args.cap}" if args.cap else "")
                + (f", from {args.start:g}" if args.start else "") + (f", keep {args.keep}" if args.keep > 1 else ""))
        rows.append({"rule": name, "schedule": schedule, "seconds": estimate(schedule, per_step, total)})
    full = per_step[0] * total
    if args.json:
        print(json.dumps({"per_step_seconds": per_step, "measured_depths": sorted(known), "full_seconds": full,
                          "rows": rows}, indent=1))
        return
    print(f"{run['variant']} seed {run['seed']}: {total} steps; seconds a step by depth "
          + ", ".join(f"{k}: {t:.3f}{'' if k in known else ' (scaled)'}" for k, t in enumerate(per_step)))
    print(f"measured training time {run['train_seconds']:.1f} s; all steps at depth 0: {full:.1f} s")
    for r in rows:
        sched = ", ".join(f"{s}: {k}" for s, k in r["schedule"]) or "never freezes"
        print(f"  {r['rule']:<28} {r['seconds']:7.1f} s  ({full / r['seconds']:.2f}x of depth 0)  freezes at {sched}")


if __name__ == "__main__":
    main()
