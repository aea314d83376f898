"""The benchmark's report over saved runs (one per variant and seed): means
and spreads, both speed-up measures (fixed budget and time to target), the
hosts, a check that it is well formed, Markdown, and matplotlib plots
(validation accuracy against training time with the freeze points marked;
time by frozen depth).

Speed-ups are means of paired ratios: each run is paired with full
fine-tuning's run of its seed when both ran on the same host (the same boot
id in their "host"; runs saved before hosts were recorded pair by seed), and
a variant's speed-up is the mean over its paired seeds of full's time over
its time (training time for the fixed budget; time to target over the seeds
where both reach it). ftd over PyTorch is the mean over paired seeds of
full's mean samples/s over PyTorch's. A run without a same-host partner is
listed but left out of the ratios. Accuracy differences pair by seed alone
(they do not depend on the host's speed).

    /usr/bin/python3 bench/report.py OUT_DIR [--title TITLE]   re-renders OUT_DIR/runs/*.json
"""
import json
import math
import os
import statistics

COLORS = {"full": "#444444", "pytorch": "#999999", "autofreeze": "#1f77b4", "autofreeze+bf16": "#d62728",
          "autofreeze+fp32": "#ff7f0e"}
OTHER_COLORS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
# Time to target: the first evaluation at or above full fine-tuning's mean
# best accuracy minus this much.
TARGET_MARGIN = 0.003


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def spread(xs):
    """Sample standard deviation; 0 for one value."""
    xs = [x for x in xs if x is not None]
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def mean_sps(r):
    e = r["epochs"]
    return sum(x.get("samples_per_second", 0) for x in e) / len(e) if e else 0.0


def hit_rate(r):
    """Examples served from the cache over examples trained with a frozen prefix."""
    served = examples = 0
    for e in r["epochs"]:
        c = e.get("cache")
        if c:
            served += c["hits"] + c["partial_hits"]
            examples += c["examples"]
    return served / examples if examples else None


def time_to(r, target):
    """Training seconds until the run's validation accuracy first reaches `target`."""
    for e in r["evaluations"]:
        if e["accuracy"] >= target:
            return e["train_seconds"]
    return None


def seconds_at_step(r, step):
    """Training time at `step`, interpolated between evaluations."""
    points = [(0, 0.0)] + [(e["step"], e["train_seconds"]) for e in r["evaluations"]]
    for (s0, t0), (s1, t1) in zip(points, points[1:]):
        if s0 <= step <= s1 and s1 > s0:
            return t0 + (t1 - t0) * (step - s0) / (s1 - s0)
    return points[-1][1]


def host_of(r):
    """The run's host ({} for runs saved before hosts were recorded)."""
    return r.get("host") or {}


def boot_of(r):
    """The run's host's boot id: one session's machine; None when not recorded."""
    return host_of(r).get("boot_id")


def same_host(a, b):
    """Whether two runs' times compare: the same boot, or neither recorded
    (runs saved before hosts were, paired by seed as they always were)."""
    return boot_of(a) == boot_of(b)


def variant_order(runs):
    """full first, then the AutoFreeze variants, other policies, and pytorch last."""
    names = {r["variant"] for r in runs}

    def rank(v):
        first = {"full": 0, "autofreeze+bf16": 1, "autofreeze+fp32": 2, "autofreeze": 3}
        return (first.get(v, 50 if v != "pytorch" else 99), v)
    return sorted(names, key=rank)


def build(workload, runs):
    """The report document: the runs and, per variant, its summary."""
    by_variant = {}
    for r in runs:
        by_variant.setdefault(r["variant"], []).append(r)
        if r.get("cache") is not None:
            r["cache"]["hit_rate"] = hit_rate(r)
    full = by_variant.get("full", [])
    full_best = mean([r["best_accuracy"] for r in full])
    target = full_best - TARGET_MARGIN if full_best is not None else None
    # Each seed's target is its own full fine-tuning's best (the mean's where
    # that seed has none): the seeds' spread then does not decide who reaches it.
    seed_target = {r["seed"]: r["best_accuracy"] - TARGET_MARGIN for r in full}

    def target_of(r):
        return seed_target.get(r["seed"], target)

    for r in runs:
        r["target_accuracy"] = target_of(r) if target is not None else None
        r["time_to_target"] = time_to(r, r["target_accuracy"]) if target is not None else None
    full_sd = spread([r["best_accuracy"] for r in full])
    reference = by_variant.get("pytorch", [])
    full_by_seed = {r["seed"]: r for r in full}
    summaries = []
    for v in variant_order(runs):
        rs = by_variant[v]
        s = {"variant": v, "seeds": sorted(r["seed"] for r in rs),
             "train_seconds_mean": mean([r["train_seconds"] for r in rs]),
             "train_seconds_spread": spread([r["train_seconds"] for r in rs]),
             "best_accuracy_mean": mean([r["best_accuracy"] for r in rs]),
             "best_accuracy_spread": spread([r["best_accuracy"] for r in rs]),
             "final_accuracy_mean": mean([r["final_accuracy"] for r in rs]),
             "samples_per_second_mean": mean([mean_sps(r) for r in rs])}
        if target is not None:
            ttts = [r["time_to_target"] for r in rs]
            s["time_to_target_mean"] = mean(ttts) if all(t is not None for t in ttts) else None
            s["runs_reaching_target"] = sum(t is not None for t in ttts)
        if full and v != "full":
            # Speed-ups: the mean over seeds of ratios between runs on the same host.
            pairs = [(r, full_by_seed[r["seed"]]) for r in rs
                     if r["seed"] in full_by_seed and same_host(r, full_by_seed[r["seed"]])]
            s["paired_seeds"] = sorted(r["seed"] for r, _ in pairs)
            s["unpaired_seeds"] = sorted(r["seed"] for r in rs if r["seed"] not in s["paired_seeds"])
            by_seed = {r["seed"]: f["train_seconds"] / r["train_seconds"] for r, f in pairs if r["train_seconds"]}
            s["speedup_fixed_budget_by_seed"] = {str(k): by_seed[k] for k in sorted(by_seed)}
            s["speedup_fixed_budget"] = mean(list(by_seed.values()))
            if target is not None:
                by_seed = {r["seed"]: f["time_to_target"] / r["time_to_target"] for r, f in pairs
                           if r["time_to_target"] and f["time_to_target"]}
                s["speedup_time_to_target_by_seed"] = {str(k): by_seed[k] for k in sorted(by_seed)}
                s["speedup_time_to_target"] = mean(list(by_seed.values()))
                s["speedup_time_to_target_seeds"] = len(by_seed)
            delta = s["best_accuracy_mean"] - full_best
            s["best_accuracy_delta_points"] = 100 * delta
            seeds_spread = max(full_sd, s["best_accuracy_spread"])
            s["delta_beyond_spread"] = abs(delta) > seeds_spread if len(rs) > 1 and len(full) > 1 else None
            # Accuracy paired by seed: each run against full fine-tuning with its seed, on any host.
            acc_pairs = [(r, full_by_seed[r["seed"]]) for r in rs if r["seed"] in full_by_seed]
            if acc_pairs:
                deltas = [100 * (r["best_accuracy"] - f["best_accuracy"]) for r, f in acc_pairs]
                s["paired_delta_points_mean"] = mean(deltas)
                s["paired_delta_points_spread"] = spread(deltas)
        if v == "full" and reference:
            # ftd over PyTorch: the mean over seeds of the same-host ratio of mean samples/s.
            ref_by_seed = {r["seed"]: r for r in reference}
            by_seed = {r["seed"]: mean_sps(r) / mean_sps(ref_by_seed[r["seed"]]) for r in rs
                       if r["seed"] in ref_by_seed and same_host(r, ref_by_seed[r["seed"]])
                       and mean_sps(ref_by_seed[r["seed"]])}
            s["throughput_over_pytorch_by_seed"] = {str(k): by_seed[k] for k in sorted(by_seed)}
            s["throughput_over_pytorch"] = mean(list(by_seed.values()))
        summaries.append(s)
    return {"workload": workload, "target_accuracy": target, "summaries": summaries, "runs": runs}


def check(doc, epochs):
    """What is missing or malformed; empty when the report is whole."""
    problems = list(doc.get("problems", []))
    for r in doc["runs"]:
        v = f"{r['variant']} seed {r['seed']}"
        if len(r["epochs"]) != epochs:
            problems.append(f"{v}: {len(r['epochs'])} epochs reported, expected {epochs}")
        for e in r["epochs"]:
            for key in ("seconds", "samples_per_second"):
                value = e.get(key)
                if not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
                    problems.append(f"{v} epoch {e.get('epoch')}: {key} is {value!r}")
        if len(r["evaluations"]) < epochs:
            problems.append(f"{v}: {len(r['evaluations'])} evaluations, expected at least {epochs}")
        last = 0.0
        for e in r["evaluations"]:
            if not 0 <= e["accuracy"] <= 1 or e["train_seconds"] < last:
                problems.append(f"{v}: evaluation at step {e['step']} is malformed")
            last = e["train_seconds"]
        if not 0 <= r["best_accuracy"] <= 1 or r["best_accuracy"] < r["final_accuracy"]:
            problems.append(f"{v}: best accuracy {r['best_accuracy']} with final {r['final_accuracy']}")
        if r["wall_seconds"] <= 0 or r["train_seconds"] <= 0 or r["peak_rss_bytes"] <= 0:
            problems.append(f"{v}: wall, training time or peak RSS missing")
        # AutoFreeze may not freeze at all in a short run (the first layer's
        # gradients can keep changing fastest): then there is nothing to cache.
        if "+" in r["variant"] and r["freezes"] and (r["cache"] is None or r["cache"]["hit_rate"] is None):
            problems.append(f"{v}: froze but has no cache statistics")
        if r["variant"].startswith(("static", "geometric")) and not r["freezes"]:
            problems.append(f"{v}: no freeze recorded")
        if r["variant"].startswith("autofreeze") and not any(d.get("layer_change_rates") for d in r["decisions"]):
            problems.append(f"{v}: decision points without change rates")
        # Runs saved since hosts are recorded (run_format 2) must have theirs;
        # older saved runs have none.
        if "host" in r or r.get("run_format", 1) >= 2:
            h = r.get("host")
            if not isinstance(h, dict):
                problems.append(f"{v}: no host recorded")
            else:
                missing = [k for k in ("cpu", "cores", "boot_id", "blas_core", "precision") if not h.get(k)]
                if missing:
                    problems.append(f"{v}: its host lacks {', '.join(missing)}")
                if h.get("precision") not in (None, "fp32", "bf16"):
                    problems.append(f"{v}: precision {h.get('precision')!r} (fp32 or bf16)")
    return problems


def fmt(x, pattern):
    return "" if x is None else pattern % x


def host_rows(runs):
    """The Hosts table's rows: one per seed and host (one per seed when each
    seed's runs share a host, as the benchmark runs them)."""
    groups = {}
    for r in runs:
        groups.setdefault((r["seed"], boot_of(r) or ""), []).append(r)
    rows = []
    order = variant_order(runs)
    for (seed, boot), rs in sorted(groups.items()):
        which = ""
        if sum(1 for k in groups if k[0] == seed) > 1:  # the seed spans hosts: say which runs ran where
            which = " (" + ", ".join(sorted({r["variant"] for r in rs}, key=order.index)) + ")"
        hosts = [host_of(r) for r in rs]
        cpu = sorted({h.get("cpu") or r.get("cpu") or "" for h, r in zip(hosts, rs)} - {""})
        cores = sorted({str(h["cores"]) for h in hosts if h.get("cores")})
        speeds = [h.get("gflops", r.get("machine_gflops")) for h, r in zip(hosts, rs)]
        speeds = [x for x in speeds if x]
        gflops = ""
        if speeds:
            lo, hi = min(speeds), max(speeds)
            gflops = f"{lo:.1f}" if hi - lo < 0.05 else f"{lo:.1f} to {hi:.1f}"

        def kernels(engine, threads=False):
            seen = []
            for r in rs:
                if r["engine"] != engine or not host_of(r):
                    continue
                h = host_of(r)
                cell = f"{h.get('blas_core') or '?'}, {h.get('precision') or '?'}"
                if threads:
                    cell += f", {r.get('threads')} thread(s)"
                if cell not in seen:
                    seen.append(cell)
            return "; ".join(seen)
        rows.append(f"| {seed} | {', '.join(cpu) or 'not recorded'} | {', '.join(cores)} | "
                    f"{boot[:8] or 'not recorded'}{which} | {gflops} | {kernels('ftd')} | {kernels('pytorch', True)} |")
    return rows


def markdown(doc, title="", images=()):
    w = doc["workload"]
    out = []
    if title:
        out.append(f"## {title}\n")
    hosts_recorded = any(host_of(r) for r in doc["runs"])
    where = ("on the hosts in the Hosts table below" if hosts_recorded else f"{w['cores']} cores ({w['cpu']})")
    out.append(f"`{w['model']}` ({w['layers']} layers), {w['train_rows']} training rows, "
               f"{w['validation_rows']} validation rows, {w['epochs']} epochs, batch {w['batch_size']}, "
               f"learning rate {w['learning_rate']}, max length {w['max_length']}, "
               f"{w['evaluations_per_epoch']} validations and {w['decisions_per_epoch']} AutoFreeze decisions "
               f"an epoch; {where}, {w['cpu_threads']} LibTorch thread(s) per ftd job; "
               f"{w['date']}.\n")
    out.append(f"    {w['command']}\n")
    if doc["target_accuracy"] is not None:
        out.append(f"Time to target: training time until a run's validation accuracy first reaches full "
                   f"fine-tuning's best minus {100 * TARGET_MARGIN:.1f} points, that of the same seed "
                   f"(mean over seeds: {doc['target_accuracy']:.4f}).\n")
    out.append("| variant | seeds | training time | speed-up, fixed budget (paired seeds) | time to target | "
               "speed-up to target (seeds both reach it) | best accuracy | vs full (best) | "
               "vs full, paired by seed (best) | final accuracy | samples/s |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    unpaired = []
    for s in doc["summaries"]:
        delta = s.get("best_accuracy_delta_points")
        verdict = ""
        if s.get("delta_beyond_spread") is not None:
            verdict = " (beyond the seeds' spread)" if s["delta_beyond_spread"] else " (within the seeds' spread)"
        paired = ""
        if s.get("paired_delta_points_mean") is not None:
            paired = f"{s['paired_delta_points_mean']:+.2f} ± {s['paired_delta_points_spread']:.2f} pt"
        reached = s.get("runs_reaching_target")
        ttt = fmt(s.get("time_to_target_mean"), "%.1f s")
        if reached is not None and reached < len(s["seeds"]):
            ttt = f"{reached} of {len(s['seeds'])} runs reach it"
        fixed = "1.00x" if s["variant"] == "full" else ""
        if s.get("speedup_fixed_budget") is not None:
            fixed = f"{s['speedup_fixed_budget']:.2f}x ({len(s['speedup_fixed_budget_by_seed'])})"
        to_target = ""
        if s.get("speedup_time_to_target") is not None:
            to_target = f"{s['speedup_time_to_target']:.2f}x ({s['speedup_time_to_target_seeds']})"
        unpaired += [f"{s['variant']} seed {seed}" for seed in s.get("unpaired_seeds", [])]
        out.append(
            f"| {s['variant']} | {len(s['seeds'])} | {s['train_seconds_mean']:.1f} ± {s['train_seconds_spread']:.1f} s | "
            f"{fixed} | {ttt} | {to_target} | "
            f"{s['best_accuracy_mean']:.4f} ± {s['best_accuracy_spread']:.4f} | "
            f"{fmt(delta, '%+.2f pt')}{verdict} | {paired} | {s['final_accuracy_mean']:.4f} | "
            f"{s['samples_per_second_mean']:.1f} |")
    out.append("")
    if unpaired:
        out.append(f"Not in the speed-ups (no full fine-tuning run of the same seed on the same host): "
                   f"{', '.join(unpaired)}.\n")
    full = next((s for s in doc["summaries"] if s["variant"] == "full"), None)
    if full and "throughput_over_pytorch" in full:
        ref = [r for r in doc["runs"] if r["variant"] == "pytorch"]
        setting = ", ".join(f"{r.get('threads')}" + (f" {host_of(r)['precision']}" if host_of(r).get("precision")
                                                      else "") for r in sorted(ref, key=lambda r: r["seed"]))
        by_seed = full["throughput_over_pytorch_by_seed"]
        if full["throughput_over_pytorch"] is None:
            out.append("ftd full fine-tuning over PyTorch eager: no seed has both on the same host.\n")
        else:
            out.append(f"ftd full fine-tuning over PyTorch eager (its best thread count and precision: {setting}), "
                       f"mean over seeds of the same-host ratio of mean samples/s: "
                       f"**{full['throughput_over_pytorch']:.2f}** ("
                       + ", ".join(f"seed {k}: {v:.2f}" for k, v in by_seed.items()) + ").\n")
    if hosts_recorded:
        out.append("Hosts: one core's float32 GFLOP/s measured just before each run; the BLAS core is the "
                   "OpenBLAS kernels each ran (PyTorch is given ftd's).\n")
        out.append("| seed | CPU | cores | boot id | one core's GFLOP/s | ftd: BLAS core, precision | "
                   "PyTorch: BLAS core, precision, threads |")
        out.append("|---|---|---|---|---|---|---|")
        out += host_rows(doc["runs"])
        out.append("")
    out.append("| run | samples/s per epoch | accuracy at each epoch's end | freezes (step: before -> after) | "
               "cache served per epoch | time by frozen depth |")
    out.append("|---|---|---|---|---|---|")
    order = variant_order(doc["runs"])
    for r in sorted(doc["runs"], key=lambda r: (order.index(r["variant"]), r["seed"])):
        sps = " / ".join("%.1f" % e["samples_per_second"] for e in r["epochs"])
        ends = [e for e in r["evaluations"] if e.get("epoch_end")] or r["evaluations"]
        accs = " / ".join("%.4f" % e["accuracy"] for e in ends)
        freezes = ", ".join(f"{f['step']}: {f['frozen_before']}->{f['frozen_after']}" for f in r["freezes"])
        served = ", ".join(f"{100 * (c['hits'] + c['partial_hits']) / c['examples']:.0f}%"
                           for c in (e.get("cache") for e in r["epochs"]) if c and c["examples"])
        depth = ", ".join(f"{k}: {v:.0f} s" for k, v in sorted(r.get("seconds_by_depth", {}).items(),
                                                               key=lambda kv: int(kv[0])))
        out.append(f"| {r['variant']} seed {r['seed']} | {sps} | {accs} | {freezes} | {served} | {depth} |")
    out.append("")
    out.append("Training time: the training loops only (loading and validation left out), as the paper "
               "measures. Speed-ups are means of paired ratios: each run is paired with ftd's full fine-tuning "
               "run of the same seed on the same host (the same boot; runs saved before hosts were recorded "
               "pair by seed), and a speed-up is the mean over the paired seeds (their number in brackets) of "
               "full's training time over the run's, or, to target, of full's time to target over the run's "
               "over the seeds where both reach it. ftd over PyTorch is likewise the mean over seeds of the "
               "same-host ratio of mean samples/s. Best accuracy: the best of each run's validations. An "
               "accuracy difference is 'beyond the seeds' spread' when it is larger than the larger of the two "
               "variants' standard deviations over seeds. Paired by seed (best): the mean over seeds of each "
               "run's best-accuracy difference against full fine-tuning with the same seed, on any host "
               "(± their standard deviation).")
    for image, caption in images:
        out.append(f"\n![{caption}]({image})\n")
    return "\n".join(out) + "\n"


def plots(doc, out_dir):
    """accuracy_vs_time and time_by_depth as PNG and SVG; returns (file, caption)
    pairs for the Markdown, or () without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ()
    runs = doc["runs"]
    others = iter(OTHER_COLORS)
    colors = {v: COLORS.get(v) or next(others, "#000000") for v in variant_order(runs)}
    runs = sorted(runs, key=lambda r: (variant_order(runs).index(r["variant"]), r["seed"]))
    floor = min((e["accuracy"] for r in runs for e in r["evaluations"]), default=0.0) - 0.01
    fig, ax = plt.subplots(figsize=(9, 5.5))
    labelled = set()
    for r in runs:
        c = colors[r["variant"]]
        ts = [0.0] + [e["train_seconds"] for e in r["evaluations"]]
        accs = [None] + [e["accuracy"] for e in r["evaluations"]]
        label = r["variant"] if r["variant"] not in labelled else None
        labelled.add(r["variant"])
        ax.plot(ts[1:], accs[1:], color=c, lw=1.4, ls="--" if r["engine"] == "pytorch" else "-",
                marker=".", ms=4, label=label, alpha=0.85)
        for f in r["freezes"]:
            t = seconds_at_step(r, f["step"])
            ax.plot([t], [floor], marker="v", color=c, ms=7)
            ax.annotate(str(f["frozen_after"]), (t, floor), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7, color=c)
    if doc["target_accuracy"] is not None:
        ax.axhline(doc["target_accuracy"], color="#888", lw=0.8, ls=":", label="target (full's best - 0.3 pt)")
    w = doc["workload"]
    ax.set_title(f"Validation accuracy against training time: {w['model']}, {w['train_rows']} rows, "
                 f"{w['epochs']} epochs")
    ax.set_xlabel("training seconds (validation not counted)")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", title="▼ freeze point (layers frozen after)", title_fontsize=7)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(out_dir, f"accuracy_vs_time.{ext}"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.45 * len(runs)))
    layers = w["layers"]
    cmap = plt.get_cmap("viridis", layers + 1)
    names = []
    runs = sorted(runs, key=lambda r: (variant_order(runs).index(r["variant"]), r["seed"]))
    for i, r in enumerate(runs):
        names.append(f"{r['variant']} seed {r['seed']}")
        left = 0.0
        for k in range(layers + 1):
            sec = float(r.get("seconds_by_depth", {}).get(str(k), 0.0))
            if sec > 0:
                ax.barh(i, sec, left=left, color=cmap(k), edgecolor="white", lw=0.5,
                        label=f"{k} frozen" if i == 0 or f"{k} frozen" not in ax.get_legend_handles_labels()[1] else None)
                left += sec
    ax.set_yticks(range(len(runs)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("training seconds")
    ax.set_title("Training time by frozen depth", pad=22)
    # Above the bars, under the title, so that it never covers one.
    ax.legend(fontsize=7, ncol=min(layers + 1, 7), loc="lower center", bbox_to_anchor=(0.5, 1.1),
              frameon=False)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(out_dir, f"time_by_depth.{ext}"), dpi=110, bbox_inches="tight")
    plt.close(fig)
    return (("accuracy_vs_time.png", "validation accuracy against training time, freeze points marked"),
            ("time_by_depth.png", "training time by frozen depth"))


def load_runs(out_dir):
    runs_dir = os.path.join(out_dir, "runs")
    runs = []
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        if name.endswith(".json"):
            with open(os.path.join(runs_dir, name)) as f:
                runs.append(json.load(f))
    return runs


def write(out_dir, workload, runs, title=""):
    doc = build(workload, runs)
    images = plots(doc, out_dir)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
    text = markdown(doc, title=title, images=images)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text)
    if not images:
        doc["problems"] = ["no plots: matplotlib (Debian's python3-matplotlib) is not installed"]
    return doc, text


def one_line(r):
    evals = ", ".join(f"{e['accuracy']:.4f}" for e in r["evaluations"])
    return (f"{r['variant']} seed {r['seed']}: wall {r['wall_seconds']:.1f} s, training {r['train_seconds']:.1f} s, "
            f"best {r['best_accuracy']:.4f}, final {r['final_accuracy']:.4f}; validations {evals}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="re-renders a benchmark folder from its saved runs")
    ap.add_argument("out")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    with open(os.path.join(a.out, "workload.json")) as f:
        wl = json.load(f)
    write(a.out, wl, load_runs(a.out), a.title)
