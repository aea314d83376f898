#!/usr/bin/python3
"""Data-parallel training on this machine's CPU devices: step time and bytes
exchanged, by frozen depth, through the real daemon and ftctl.

Three variants of the same job run back to back on one host, each on a fresh
daemon:

  1x1   one device, one LibTorch thread (ftd's default)
  1x2   one device, two threads (--cpu_threads=2): the machine's two cores
        inside one replica
  2x1   two devices of one thread each (--cpu_devices=2, --devices=2): the two
        cores as two replicas in a c10d Gloo group, gradients all-reduced
  2x1+overlap  the same with --overlap_allreduce: each bucket's all-reduce
        starts while backward still runs
  pool-2x1  two daemons of one device each, on loopback: a coordinator
        (--rendezvous_address) and a worker (--join) that runs replica 1,
        the replicas meeting in the coordinator's c10d TCPStore; the same
        cores as 2x1, so pool-2x1 against 2x1 is what two processes and the
        pool's protocol cost (inputs fetched by digest, TCP between
        processes instead of within one)

1x2 against 2x1 is the price of the process group on the same cores: the
exchange and the smaller products each replica computes. Every variant
freezes on the same linear schedule, so the steps visit the same depths, and
the job's result gives the steps, seconds and (2x1) bytes all-reduced at each
depth: the bytes a step sends at depth k, and the share of the job's
communication that freezing saved against exchanging every layer's gradient
for the whole run.

    /usr/bin/python3 bench/parallel_bench.py --out docs/benchmarks/parallel
    /usr/bin/python3 bench/parallel_bench.py --rows=1000 --epochs=1 --out /tmp/p   # quick look

Each run is saved as OUT/runs/VARIANT.json when it finishes (--resume skips
saved runs from the same boot); the report is OUT/results.md and
OUT/results.json.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from finetune_bench import Daemon  # noqa: E402  (a daemon on free ports, its ftctl)
VARIANTS = {
    "1x1": dict(cpu_devices=1, cpu_threads=1, devices=1, overlap=False),
    "1x2": dict(cpu_devices=1, cpu_threads=2, devices=1, overlap=False),
    "2x1": dict(cpu_devices=2, cpu_threads=1, devices=2, overlap=False),
    "2x1+overlap": dict(cpu_devices=2, cpu_threads=1, devices=2, overlap=True),
    "pool-2x1": dict(cpu_devices=1, cpu_threads=1, devices=2, overlap=False, daemons=2),
}


def boot_id():
    try:
        return open("/proc/sys/kernel/random/boot_id").read().strip()[:8]
    except OSError:
        return ""


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def subset(path, rows, out, labels=None):
    """The first `rows` rows of a CSV (with its header); with `labels`, only
    rows whose label is among them. Returns the labels written."""
    seen = set()
    with open(path, newline="") as f, open(out, "w", newline="") as g:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(g, fieldnames=reader.fieldnames)
        writer.writeheader()
        for row in reader:
            if rows <= 0:
                break
            if labels is not None and row["label"] not in labels:
                continue
            writer.writerow(row)
            seen.add(row["label"])
            rows -= 1
    return seen


def start_worker(args, daemon, work, v):
    """A worker daemon of one device joined to `daemon` (the coordinator), once it lists it."""
    log = open(os.path.join(work, "worker.log"), "w")
    worker = subprocess.Popen([os.path.join(args.build, "server/ftd"), f"--join={daemon.address}",
                               "--worker_name=w1", "--cpu_devices=1", f"--cpu_threads={v['cpu_threads']}",
                               f"--data_dir={os.path.join(work, 'worker-data')}", "--metrics_address=",
                               "--collective_host=127.0.0.1"], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        if "w1/cpu:0" in daemon.run("info").stdout:
            return worker
        if worker.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"the worker did not attach:\n{open(log.name).read()[-3000:]}")


def run_variant(args, name, train, valid):
    v = VARIANTS[name]
    work = tempfile.mkdtemp(prefix="ftd-parallel-", dir=args.work)
    pool = v.get("daemons", 1) > 1
    daemon = Daemon(args, work, [f"--cpu_devices={v['cpu_devices']}", f"--cpu_threads={v['cpu_threads']}",
                                 f"--overlap_allreduce={'true' if v['overlap'] else 'false'}"]
                    + (["--rendezvous_address=127.0.0.1:0"] if pool else []))
    worker = None
    try:
        if pool:
            worker = start_worker(args, daemon, work, v)
        submit = ["submit", "--upload=false", f"--model={args.model}", f"--train={train}",
                  f"--validation={valid}", f"--epochs={args.epochs}", f"--batch_size={args.batch_size}",
                  f"--learning_rate={args.lr}", f"--max_seq_length={args.max_length}", "--seed=0",
                  f"--freeze=linear:{args.freeze_start}:1", "--device=cpu", f"--devices={v['devices']}",
                  f"--name={name}", "--json"]
        start = time.time()
        job_id = json.loads(daemon.run(*submit).stdout)["id"]
        daemon.run("watch", job_id, "--json", check=False)
        job = json.loads(daemon.run("get", job_id, "--json").stdout)
        wall = time.time() - start
    finally:
        daemon.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
    if job["state"] not in ("JOB_STATE_SUCCEEDED",):
        raise SystemExit(f"{name}: the job ended {job['state']}: {job.get('error')}\n"
                         f"{open(daemon.log_path).read()[-3000:]}")
    shutil.rmtree(work, ignore_errors=True)
    metrics = job.get("result", {}).get("metrics", {})
    depths = {}
    for key, value in metrics.items():
        for prefix, field in (("train_seconds_frozen_", "seconds"), ("steps_frozen_", "steps"),
                              ("allreduce_bytes_frozen_", "bytes")):
            if key.startswith(prefix):
                depths.setdefault(int(key[len(prefix):]), {})[field] = float(value)
    return {"variant": name, **v, "boot_id": boot_id(), "cpu": cpu_name(), "wall_seconds": wall,
            "train_seconds": float(metrics.get("train_seconds", 0)),
            "best_accuracy": float(metrics.get("best_validation_accuracy", 0)),
            "final_accuracy": float(metrics.get("validation_accuracy", 0)),
            "allreduce_bytes": float(metrics.get("allreduce_bytes", 0)),
            "by_depth": {str(k): depths[k] for k in sorted(depths)}}


def report(args, runs):
    lines = [f"# Data-parallel training on CPU devices\n",
             f"`{os.path.basename(args.model)}`, {args.rows} training rows, {args.epochs} epochs, batch "
             f"{args.batch_size}, max length {args.max_length}, a linear freeze schedule from "
             f"{args.freeze_start} of training; host: {runs[0]['cpu']}, boot {runs[0]['boot_id']}.\n",
             "    /usr/bin/python3 bench/parallel_bench.py " + " ".join(sys.argv[1:]) + "\n"]
    base = next((r for r in runs if r["variant"] == "1x1"), None)
    lines.append("| variant | devices x threads | training time | speed-up over 1x1 | best accuracy | final accuracy |")
    lines.append("|---|---|---|---|---|---|")
    for r in runs:
        speed = base["train_seconds"] / r["train_seconds"] if base and r["train_seconds"] else 0
        lines.append(f"| {r['variant']} | {r['devices']} x {r['cpu_threads']} | {r['train_seconds']:.1f} s | "
                     f"{speed:.2f}x | {r['best_accuracy']:.4f} | {r['final_accuracy']:.4f} |")
    lines.append("\nStep time (s) by frozen depth, and (2x1) bytes each replica all-reduced a step:\n")
    depths = sorted({int(k) for r in runs for k in r["by_depth"]})
    lines.append("| depth | " + " | ".join(f"{r['variant']} s/step" for r in runs) + " | 2x1 bytes/step |")
    lines.append("|---|" + "---|" * (len(runs) + 1))
    two = next((r for r in runs if r["devices"] == 2), None)
    for d in depths:
        cells = []
        for r in runs:
            x = r["by_depth"].get(str(d), {})
            cells.append(f"{x['seconds'] / x['steps']:.3f}" if x.get("steps") else "")
        b = two["by_depth"].get(str(d), {}) if two else {}
        per_step = b.get("bytes", 0) / b["steps"] if b.get("steps") else 0
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {per_step / 2**20:.2f} MiB |")
    if two:
        per_step = {int(k): x["bytes"] / x["steps"] for k, x in two["by_depth"].items() if x.get("steps")}
        if not per_step or 0 not in per_step or max(per_step) == 0 or per_step[max(per_step)] >= per_step[0]:
            raise SystemExit(f"{two['variant']}: freezing did not cut the bytes all-reduced a step: {per_step}")
    one_two = {r["variant"]: r for r in runs}
    if "1x2" in one_two and "2x1" in one_two and one_two["2x1"]["train_seconds"]:
        lines.append(f"\nOn the same two cores, two replicas of one thread against one replica of two threads: "
                     f"{one_two['1x2']['train_seconds'] / one_two['2x1']['train_seconds']:.2f}x.")
    if "pool-2x1" in one_two and "2x1" in one_two and one_two["pool-2x1"]["train_seconds"]:
        a, b = one_two["2x1"], one_two["pool-2x1"]
        lines.append(f"\nTwo daemons of one device (loopback) against one daemon of two: "
                     f"{a['train_seconds'] / b['train_seconds']:.2f}x the speed ({b['train_seconds']:.1f} s "
                     f"against {a['train_seconds']:.1f} s); the replicas exchanged "
                     f"{b['allreduce_bytes'] / 2**20:.0f} MiB against {a['allreduce_bytes'] / 2**20:.0f} MiB.")
    if two and two["by_depth"].get("0", {}).get("steps"):
        d0 = two["by_depth"]["0"]
        full = d0["bytes"] / d0["steps"] * sum(x.get("steps", 0) for x in two["by_depth"].values())
        sent = sum(x.get("bytes", 0) for x in two["by_depth"].values())
        lines.append(f"\nFreezing saved {100 * (1 - sent / full):.1f}% of the job's all-reduce bytes "
                     f"({sent / 2**20:.0f} MiB sent, {full / 2**20:.0f} MiB had every step exchanged "
                     f"every layer's gradient).")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"runs": runs}, f, indent=1)
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "examples/models/bert-mini-6l-256h"))
    ap.add_argument("--train", default=os.path.join(ROOT, "examples/datasets/wordnet-supersense-train-6k.csv"))
    ap.add_argument("--validation",
                    default=os.path.join(ROOT, "examples/datasets/wordnet-supersense-validation-1500.csv"))
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--validation-rows", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--freeze-start", type=float, default=0.2)
    ap.add_argument("--variants", default="1x1,1x2,2x1,2x1+overlap,pool-2x1")
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    args.work = args.work or tempfile.mkdtemp(prefix="ftd-parallel-bench-")
    train, valid = os.path.join(args.work, "train.csv"), os.path.join(args.work, "valid.csv")
    labels = subset(args.train, args.rows, train)
    subset(args.validation, args.validation_rows, valid, labels)
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    runs = []
    for name in args.variants.split(","):
        path = os.path.join(args.out, "runs", f"{name}.json")
        if args.resume and os.path.exists(path):
            saved = json.load(open(path))
            if saved.get("boot_id") == boot_id():
                print(f"--- {name}: saved already", flush=True)
                runs.append(saved)
                continue
        print(f"--- {name}", flush=True)
        r = run_variant(args, name, train, valid)
        json.dump(r, open(path, "w"), indent=1)
        print(f"{name}: training {r['train_seconds']:.1f} s, best {r['best_accuracy']:.4f}", flush=True)
        runs.append(r)
    report(args, runs)


if __name__ == "__main__":
    main()
