#!/usr/bin/python3
"""ftd's end-to-end benchmark: the same fine-tuning job with each freezing and
caching variant, through the real daemon, against plain PyTorch.

Each ftd variant runs on a fresh daemon on free ports, driven through the
gRPC API with ftctl (submit, watch the event stream, get the result), like a
user. The PyTorch reference (bench/reference/pytorch_reference.py, Debian's
python3-torch) runs the full fine-tuning recipe on the same data and seed.

    /usr/bin/python3 bench/finetune_bench.py --out bench-out        # every variant
    /usr/bin/python3 bench/finetune_bench.py --quick --out /tmp/q    # CI smoke run
    /usr/bin/python3 bench/finetune_bench.py --variants=autofreeze,autofreeze+bf16
    /usr/bin/python3 bench/finetune_bench.py --no-reference --freeze=autofreeze --cache=bf16

Variants: full (no freezing), static:K, autofreeze, autofreeze+bf16 and
autofreeze+fp32 (AutoFreeze with the activation cache), pytorch. Writes
results.json, results.md and accuracy_vs_time.svg to --out, and prints the
table. Ratios are against ftd's full fine-tuning in the same run.
"""
import argparse
import csv
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (bench/report.py)


def head_csv(src, dst, rows):
    """The header and the first `rows` records."""
    with open(src, encoding="utf-8", newline="") as f:
        header, *records = list(csv.reader(f))
    with open(dst, "w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *records[:rows]])


def held_out_csv(src, dst, rows, labels):
    """The first `rows` records whose label is in `labels` (None: any)."""
    with open(src, encoding="utf-8", newline="") as f:
        header, *records = list(csv.reader(f))
    col = header.index("label")
    kept = [r for r in records if labels is None or r[col] in labels][:rows]
    with open(dst, "w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *kept])
    return len(kept)


def labels_of(path):
    with open(path, encoding="utf-8", newline="") as f:
        header, *records = list(csv.reader(f))
    col = header.index("label")
    return {r[col] for r in records}


def timestamp(value):
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def parse_variant(name):
    """(freeze policy, cache dtype or None) of an ftd variant."""
    freeze, _, cache = name.partition("+")
    if freeze == "full":
        freeze = "none"
    if cache not in ("", "bf16", "fp32"):
        raise SystemExit(f"--variants: unknown cache \"{cache}\" in \"{name}\" (bf16 or fp32)")
    if not (freeze in ("none", "autofreeze") or re.fullmatch(r"static:\d+", freeze)):
        raise SystemExit(f"--variants: unknown variant \"{name}\"")
    return freeze, cache or None


class Daemon:
    """ftd on free ports in its own data folder; stop() returns its peak RSS."""

    def __init__(self, args, work):
        self.work = work
        address_file = os.path.join(work, "address")
        env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.env))
        self.log_path = os.path.join(work, "ftd.log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [os.path.join(args.build, "server/ftd"), "--address=127.0.0.1:0",
             f"--address_file={address_file}", "--metrics_address=127.0.0.1:0",
             f"--data_dir={os.path.join(work, 'ftd-data')}", f"--data_roots={args.work},{ROOT},{args.model}",
             f"--cpu_threads={args.cpu_threads}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        for _ in range(600):
            if os.path.exists(address_file) and open(address_file).read().strip():
                break
            if self.process.poll() is not None:
                raise SystemExit(f"ftd exited at start:\n{open(self.log_path).read()[-3000:]}")
            time.sleep(0.1)
        self.address = open(address_file).read().strip()
        self.ftctl = [os.path.join(args.build, "client/ftctl"), f"--address={self.address}"]

    def run(self, *argv, check=True):
        result = subprocess.run(self.ftctl + list(argv), capture_output=True, text=True)
        if check and result.returncode != 0:
            raise SystemExit(f"ftctl {' '.join(argv)}: {result.stderr}\n{open(self.log_path).read()[-3000:]}")
        return result

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.log.close()
        return usage.ru_maxrss * 1024  # KiB on Linux


def run_ftd(args, name, train, valid):
    freeze, cache = parse_variant(name)
    work = tempfile.mkdtemp(prefix="ftd-bench-", dir=args.work)
    daemon = Daemon(args, work)
    try:
        submit = ["submit", f"--model={args.model}", f"--train={train}", f"--validation={valid}",
                  f"--epochs={args.epochs}", f"--batch_size={args.batch_size}",
                  f"--learning_rate={args.lr}", f"--max_seq_length={args.max_length}",
                  f"--seed={args.seed}", f"--freeze={freeze}", "--device=cpu", f"--name={name}",
                  "--json"]
        if cache:
            submit += ["--cache=true", f"--cache_dtype={cache}"]
        start = time.time()
        job_id = json.loads(daemon.run(*submit).stdout)["id"]
        watch = daemon.run("watch", job_id, "--json", check=False)
        events = [json.loads(line) for line in watch.stdout.splitlines() if line.strip()]
        job = json.loads(daemon.run("get", job_id, "--json").stdout)
        wall = time.time() - start
    finally:
        peak_rss = daemon.stop()
    if job["state"] != "SUCCEEDED":
        raise SystemExit(f"{name}: the job ended {job['state']}: {job.get('error')}\n"
                         f"{open(daemon.log_path).read()[-3000:]}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return summarize_ftd(name, job, events, wall, peak_rss)


def summarize_ftd(name, job, events, wall, peak_rss):
    started = None
    epochs = {}
    freezes = []
    for e in events:
        t = timestamp(e["time"]) if "time" in e else None
        change = e.get("state_change", {})
        if change.get("to") == "RUNNING":
            started = t
        msg = e.get("log", {}).get("message", "")
        m = re.match(r"epoch (\d+): ([\d.]+) s, ([\d.]+) samples/s, training loss ([\d.]+)", msg)
        if m:
            epochs.setdefault(int(m.group(1)), {}).update(
                seconds=float(m.group(2)), samples_per_second=float(m.group(3)),
                train_loss=float(m.group(4)))
        if "evaluation" in e:
            ev = e["evaluation"]
            epochs.setdefault(ev["epoch"], {}).update(
                validation_accuracy=ev.get("accuracy", 0.0), validation_loss=ev.get("loss", 0.0),
                macro_f1=ev.get("macro_f1", 0.0), elapsed=t - started if started else None)
        if "freeze_decision" in e:
            f = e["freeze_decision"]
            if f.get("frozen_after", 0) > f.get("frozen_before", 0):
                freezes.append({"step": int(f.get("step", 0)), "epoch": f.get("epoch", 1),
                                "frozen_before": f.get("frozen_before", 0),
                                "frozen_after": f["frozen_after"],
                                "total_layers": f.get("total_layers", 0),
                                "trained_fraction": f.get("trainable_parameter_fraction", 1.0),
                                "elapsed": t - started if started else None})
        if "cache" in e and e["cache"].get("epoch", {}).get("epoch"):
            c = e["cache"]["epoch"]
            epochs.setdefault(c["epoch"], {})["cache"] = {
                k: float(c.get(k, 0)) for k in ("examples", "hits", "partial_hits", "misses", "corrupt",
                                                "bytes_written", "bytes_read", "read_wait_seconds")}
    result = job.get("result", {})
    metrics = result.get("metrics", {})
    cache = job.get("cache", {})
    segments = cache.get("segments", [])
    return {
        "variant": name,
        "engine": "ftd",
        "job_id": job["id"],
        "wall_seconds": wall,
        "train_seconds": float(metrics.get("train_seconds", sum(e.get("seconds", 0) for e in epochs.values()))),
        "epochs": [dict(epoch=k, **epochs[k]) for k in sorted(epochs)],
        "final_accuracy": float(metrics.get("validation_accuracy", 0.0)),
        "freezes": freezes,
        "cache": None if not job.get("spec", {}).get("activation_cache", {}).get("enabled") else {
            "dtype": cache.get("dtype", ""),
            "bytes": sum(int(s.get("bytes", 0)) for s in segments),
            "entries": sum(int(s.get("entries", 0)) for s in segments),
            "disabled_reason": cache.get("disabled_reason", ""),
        },
        "peak_rss_bytes": peak_rss,
    }


def run_pytorch(args, train, valid):
    out = os.path.join(args.work, "pytorch.json")
    start = time.time()
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench/reference/pytorch_reference.py"),
         f"--model={args.model}", f"--train={train}", f"--validation={valid}",
         f"--epochs={args.epochs}", f"--batch-size={args.batch_size}", f"--lr={args.lr}",
         f"--max-length={args.max_length}", f"--seed={args.seed}", f"--threads={args.cpu_threads}",
         f"--json={out}"])
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the PyTorch reference failed")
    wall = time.time() - start
    ref = json.load(open(out))
    elapsed = 0.0
    epochs = []
    for e in ref["epochs"]:
        elapsed += e["seconds"] + e.get("eval_seconds", 0.0)
        epochs.append(dict(e, elapsed=elapsed))
    return {"variant": "pytorch", "engine": "pytorch", "wall_seconds": wall,
            "train_seconds": sum(e["seconds"] for e in epochs), "epochs": epochs,
            "final_accuracy": epochs[-1]["validation_accuracy"], "freezes": [], "cache": None,
            "peak_rss_bytes": usage.ru_maxrss * 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "examples/models/bert-mini-6l-256h"))
    ap.add_argument("--train", default=os.path.join(ROOT, "examples/datasets/wordnet-supersense-train-6k.csv"))
    ap.add_argument("--validation",
                    default=os.path.join(ROOT, "examples/datasets/wordnet-supersense-validation-1500.csv"))
    ap.add_argument("--train-rows", type=int, default=6000)
    ap.add_argument("--validation-rows", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="",
                    help="comma-separated: full, static:K, autofreeze, autofreeze+bf16, autofreeze+fp32, "
                         "pytorch (default: all, static:K with K = 2/3 of the layers)")
    ap.add_argument("--freeze", help="one ftd variant's freezing (with --cache): none, static:K, autofreeze")
    ap.add_argument("--cache", choices=["none", "bf16", "fp32"], help="with --freeze: the activation cache")
    ap.add_argument("--no-reference", action="store_true", help="leave out the PyTorch reference")
    ap.add_argument("--cpu-threads", type=int, default=1, help="ftd --cpu_threads and PyTorch's threads")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the daemon (repeatable)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 256 rows, 2 epochs, max length 32; checks the report, not timings")
    ap.add_argument("--out", help="folder for results.json, results.md and accuracy_vs_time.svg")
    ap.add_argument("--title", default="", help="a title for the report")
    ap.add_argument("--keep", action="store_true", help="keep the daemons' data folders")
    args = ap.parse_args()
    if args.quick:
        args.train_rows, args.validation_rows, args.epochs, args.max_length = 256, 64, 2, 32

    layers = json.load(open(os.path.join(args.model, "config.json")))["num_hidden_layers"]
    if args.freeze:
        variants = [("full" if args.freeze == "none" else args.freeze) +
                    (f"+{args.cache}" if args.cache and args.cache != "none" else "")]
        if not args.no_reference:
            variants.append("pytorch")
    elif args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    else:
        variants = ["full", f"static:{(2 * layers) // 3}", "autofreeze", "autofreeze+bf16", "autofreeze+fp32"]
        if not args.no_reference:
            variants.append("pytorch")
    for v in variants:
        if v != "pytorch":
            parse_variant(v)

    args.work = tempfile.mkdtemp(prefix="ftd-bench-")
    try:
        train = os.path.join(args.work, "train.csv")
        valid = os.path.join(args.work, "validation.csv")
        head_csv(args.train, train, args.train_rows)
        # Validation rows whose labels training has (a small --train-rows may miss some).
        valid_rows = held_out_csv(args.validation, valid, args.validation_rows, labels_of(train))
        workload = {
            "model": os.path.basename(os.path.normpath(args.model)), "layers": layers,
            "train_rows": args.train_rows, "validation_rows": valid_rows, "epochs": args.epochs,
            "batch_size": args.batch_size, "learning_rate": args.lr, "max_length": args.max_length,
            "seed": args.seed, "cpu_threads": args.cpu_threads, "env": args.env,
            "cpu": report.cpu_model(), "cores": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["/usr/bin/python3", "bench/finetune_bench.py"] + sys.argv[1:]),
        }
        print(f"workload: {workload['model']} ({layers} layers), {args.train_rows} training rows, "
              f"{valid_rows} validation rows, {args.epochs} epochs, batch {args.batch_size}, "
              f"max length {args.max_length}; variants: {', '.join(variants)}", flush=True)
        results = []
        for v in variants:
            print(f"--- {v}", flush=True)
            r = run_pytorch(args, train, valid) if v == "pytorch" else run_ftd(args, v, train, valid)
            results.append(r)
            print(report.one_line(r), flush=True)
        doc = report.build(workload, results)
        problems = report.check(doc, variants, args.epochs)
        print("\n" + report.markdown(doc, title=args.title))
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "results.json"), "w") as f:
                json.dump(doc, f, indent=1)
            with open(os.path.join(args.out, "results.md"), "w") as f:
                f.write(report.markdown(doc, title=args.title, image="accuracy_vs_time.svg"))
            with open(os.path.join(args.out, "accuracy_vs_time.svg"), "w") as f:
                f.write(report.svg(doc))
            print(f"wrote {args.out}/results.json, results.md, accuracy_vs_time.svg")
        if problems:
            raise SystemExit("the report is not well formed:\n  " + "\n  ".join(problems))
    finally:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
