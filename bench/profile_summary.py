#!/usr/bin/python3
"""Totals a LibTorch profile (engine_step_bench --profile=TRACE) by operator:
milliseconds a step, inclusive (an operator's time includes the operators it
calls: aten::linear includes its aten::addmm), largest first.

    /usr/bin/python3 bench/profile_summary.py TRACE [--steps 3] [--top 25]
"""
import argparse
import collections
import json


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--steps", type=int, default=3, help="the steps the trace holds")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    with open(args.trace) as f:
        events = json.load(f)
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            total[e["name"]] += e["dur"] / 1000.0
            count[e["name"]] += 1
    print(f"{'operator':44s} {'ms/step':>9s} {'calls/step':>10s}")
    for name, ms in total.most_common(args.top):
        print(f"{name[:44]:44s} {ms / args.steps:9.1f} {count[name] / args.steps:10.0f}")


if __name__ == "__main__":
    main()
