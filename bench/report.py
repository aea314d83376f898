"""The benchmark's report: ratios, a check that it is well formed, a Markdown
table and an SVG plot of validation accuracy against wall time (freeze points
marked). Standard library only."""
import html
import math

COLORS = {"full": "#444444", "pytorch": "#999999", "autofreeze": "#1f77b4", "autofreeze+bf16": "#d62728",
          "autofreeze+fp32": "#ff7f0e"}
OTHER_COLORS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


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


def build(workload, results):
    base = next((r for r in results if r["variant"] == "full"), None)
    ref = next((r for r in results if r["variant"] == "pytorch"), None)
    for r in results:
        r["ratios"] = {}
        if base and r is not base and r["engine"] == "ftd":
            r["ratios"]["speedup_train"] = base["train_seconds"] / r["train_seconds"]
            r["ratios"]["speedup_wall"] = base["wall_seconds"] / r["wall_seconds"]
            r["ratios"]["accuracy_delta_points"] = 100 * (r["final_accuracy"] - base["final_accuracy"])
        if ref and r["variant"] == "full":
            r["ratios"]["throughput_over_pytorch"] = mean_sps(r) / mean_sps(ref)
        if r.get("cache") is not None:
            r["cache"]["hit_rate"] = hit_rate(r)
            r["cache"]["hit_rate_last_epoch"] = (
                (r["epochs"][-1]["cache"]["hits"] + r["epochs"][-1]["cache"]["partial_hits"]) /
                r["epochs"][-1]["cache"]["examples"]
                if r["epochs"] and r["epochs"][-1].get("cache", {}).get("examples") else None)
    return {"workload": workload, "results": results}


def check(doc, variants, epochs):
    """What is missing or malformed; empty when the report is whole."""
    problems = []
    got = [r["variant"] for r in doc["results"]]
    if got != variants:
        problems.append(f"variants {got}, expected {variants}")
    for r in doc["results"]:
        v = r["variant"]
        if len(r["epochs"]) != epochs:
            problems.append(f"{v}: {len(r['epochs'])} epochs reported, expected {epochs}")
        for e in r["epochs"]:
            for key in ("seconds", "samples_per_second", "validation_accuracy", "elapsed"):
                value = e.get(key)
                if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                    problems.append(f"{v} epoch {e.get('epoch')}: {key} is {value!r}")
        if not 0 <= r["final_accuracy"] <= 1:
            problems.append(f"{v}: final accuracy {r['final_accuracy']}")
        if r["wall_seconds"] <= 0 or r["train_seconds"] <= 0 or r["peak_rss_bytes"] <= 0:
            problems.append(f"{v}: wall, training time or peak RSS missing")
        if "+" in v and (r["cache"] is None or r["cache"]["hit_rate"] is None):
            problems.append(f"{v}: no cache statistics")
        if v.startswith(("static", "autofreeze")) and not r["freezes"]:
            problems.append(f"{v}: no freeze decision recorded")
    return problems


def fmt_ratio(x, digits=2):
    return "" if x is None else f"{x:.{digits}f}x"


def markdown(doc, title="", image=None):
    w = doc["workload"]
    out = []
    if title:
        out.append(f"## {title}\n")
    out.append(f"`{w['model']}` ({w['layers']} layers), {w['train_rows']} training rows, "
               f"{w['validation_rows']} validation rows, {w['epochs']} epochs, batch {w['batch_size']}, "
               f"learning rate {w['learning_rate']}, max length {w['max_length']}, seed {w['seed']}; "
               f"{w['cores']} cores ({w['cpu']}), {w['cpu_threads']} LibTorch thread(s) per job"
               f"{', ' + ' '.join(w['env']) if w['env'] else ''}; {w['date']}.\n")
    out.append(f"    {w['command']}\n")
    out.append("| variant | wall | training | speed-up (training / wall) | final accuracy | vs full | "
               "samples/s per epoch | accuracy per epoch | cache served | cache bytes | peak RSS |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in doc["results"]:
        ratios = r.get("ratios", {})
        speed = (f"{fmt_ratio(ratios.get('speedup_train'))} / {fmt_ratio(ratios.get('speedup_wall'))}"
                 if "speedup_train" in ratios else ("1.00x" if r["variant"] == "full" else ""))
        delta = ratios.get("accuracy_delta_points")
        cache = r.get("cache")
        delta_text = "" if delta is None else "%+.2f pt" % delta
        sps = " / ".join("%.1f" % e["samples_per_second"] for e in r["epochs"])
        accs = " / ".join("%.4f" % e["validation_accuracy"] for e in r["epochs"])
        served = "" if not cache or cache["hit_rate"] is None else "%.1f%%" % (100 * cache["hit_rate"])
        stored = "" if not cache else "%.1f MiB" % (cache["bytes"] / 2**20)
        out.append(
            f"| {r['variant']} | {r['wall_seconds']:.1f} s | {r['train_seconds']:.1f} s | {speed} | "
            f"{r['final_accuracy']:.4f} | {delta_text} | {sps} | {accs} | {served} | {stored} | "
            f"{r['peak_rss_bytes'] / 2**20:.0f} MiB |")
    out.append("")
    full = next((r for r in doc["results"] if r["variant"] == "full"), None)
    if full and "throughput_over_pytorch" in full["ratios"]:
        out.append(f"ftd full fine-tuning over PyTorch, mean samples/s: "
                   f"**{full['ratios']['throughput_over_pytorch']:.2f}**.\n")
    for r in doc["results"]:
        if r["freezes"]:
            steps = ", ".join(f"step {f['step']} (epoch {f['epoch']}): {f['frozen_before']} -> {f['frozen_after']}"
                              for f in r["freezes"])
            out.append(f"- {r['variant']} freezes: {steps}")
        if r.get("cache"):
            per_epoch = []
            for e in r["epochs"]:
                c = e.get("cache")
                if c and c["examples"]:
                    per_epoch.append(f"epoch {e['epoch']} {c['hits'] + c['partial_hits']:.0f}/{c['examples']:.0f}")
            out.append(f"- {r['variant']} cache served: {', '.join(per_epoch) or 'nothing'}; "
                       f"{r['cache']['entries']} entries, {r['cache']['bytes'] / 2**20:.1f} MiB at the end"
                       f"{'; turned off: ' + r['cache']['disabled_reason'] if r['cache']['disabled_reason'] else ''}")
    out.append("")
    out.append("Wall: submission to the result, with loading and evaluations; training: the epochs' "
               "training loops. Speed-up and accuracy are against ftd's full fine-tuning in the same run. "
               "Cache served: examples started from a stored activation, of those trained while a prefix "
               "was frozen.")
    if image:
        out.append(f"\n![validation accuracy against wall time]({image})\n")
    return "\n".join(out) + "\n"


def svg(doc, width=760, height=440):
    """Validation accuracy against time since the job started, one line per
    variant, a marker at each freeze point."""
    results = doc["results"]
    left, right, top, bottom = 60, 190, 30, 50
    pw, ph = width - left - right, height - top - bottom
    t_max = max((e["elapsed"] for r in results for e in r["epochs"]), default=1) * 1.05
    accs = [e["validation_accuracy"] for r in results for e in r["epochs"]]
    a_min = math.floor(min(accs, default=0) * 20) / 20
    a_max = math.ceil(max(accs, default=1) * 20) / 20
    if a_max <= a_min:
        a_max = a_min + 0.05

    def x(t):
        return left + pw * t / t_max

    def y(a):
        return top + ph * (1 - (a - a_min) / (a_max - a_min))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="18" font-size="14">Validation accuracy against wall time '
             f'({html.escape(doc["workload"]["model"])})</text>']
    for i in range(6):  # grid
        a = a_min + (a_max - a_min) * i / 5
        parts.append(f'<line x1="{left}" y1="{y(a):.1f}" x2="{left + pw}" y2="{y(a):.1f}" stroke="#e0e0e0"/>')
        parts.append(f'<text x="{left - 6}" y="{y(a) + 4:.1f}" text-anchor="end">{a:.2f}</text>')
        t = t_max * i / 5
        parts.append(f'<text x="{x(t):.1f}" y="{top + ph + 18}" text-anchor="middle">{t:.0f}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 12}" text-anchor="middle">seconds since the job started</text>')
    parts.append(f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" '
                 f'text-anchor="middle">validation accuracy</text>')
    others = iter(OTHER_COLORS)
    for k, r in enumerate(results):
        color = COLORS.get(r["variant"]) or next(others, "#000000")
        pts = [(0.0, None)] + [(e["elapsed"], e["validation_accuracy"]) for e in r["epochs"]]
        path = " ".join(f"{x(t):.1f},{y(a):.1f}" for t, a in pts if a is not None)
        dash = ' stroke-dasharray="5,3"' if r["engine"] == "pytorch" else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for t, a in pts:
            if a is not None:
                parts.append(f'<circle cx="{x(t):.1f}" cy="{y(a):.1f}" r="3" fill="{color}"/>')
        for f in r["freezes"]:
            if f.get("elapsed") is None:
                continue
            fx = x(f["elapsed"])
            parts.append(f'<line x1="{fx:.1f}" y1="{top + ph}" x2="{fx:.1f}" y2="{top + ph - 10}" '
                         f'stroke="{color}" stroke-width="2"/>')
            parts.append(f'<text x="{fx:.1f}" y="{top + ph - 13}" text-anchor="middle" font-size="9" '
                         f'fill="{color}">{f["frozen_after"]}</text>')
        ly = top + 16 + 18 * k
        parts.append(f'<line x1="{left + pw + 12}" y1="{ly - 4}" x2="{left + pw + 32}" y2="{ly - 4}" '
                     f'stroke="{color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{left + pw + 38}" y="{ly}">{html.escape(r["variant"])}</text>')
    parts.append(f'<text x="{left + pw + 12}" y="{top + 16 + 18 * len(results) + 10}" font-size="10">'
                 f'ticks: freeze points</text>')
    parts.append(f'<text x="{left + pw + 12}" y="{top + 16 + 18 * len(results) + 24}" font-size="10">'
                 f'(layers frozen after)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def one_line(r):
    epochs = ", ".join(f"{e['seconds']:.1f} s / {e['validation_accuracy']:.4f}" for e in r["epochs"])
    return (f"{r['variant']}: wall {r['wall_seconds']:.1f} s, training {r['train_seconds']:.1f} s, "
            f"epochs (time / accuracy) {epochs}; peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB")


if __name__ == "__main__":
    # Re-renders a saved run: report.py RESULTS_JSON OUT_DIR [TITLE]
    import json
    import os
    import sys

    if len(sys.argv) < 3:
        sys.exit("usage: report.py RESULTS_JSON OUT_DIR [TITLE]")
    with open(sys.argv[1]) as f:
        saved = json.load(f)
    title = sys.argv[3] if len(sys.argv) > 3 else ""
    os.makedirs(sys.argv[2], exist_ok=True)
    with open(os.path.join(sys.argv[2], "results.md"), "w") as f:
        f.write(markdown(saved, title=title, image="accuracy_vs_time.svg"))
    with open(os.path.join(sys.argv[2], "accuracy_vs_time.svg"), "w") as f:
        f.write(svg(saved))
