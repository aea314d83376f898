#!/usr/bin/python3
"""Fine-tuning benchmark: ftd (through the daemon and ftctl) against the same
job in plain PyTorch (bench/pytorch_reference.py), measured in the same run.

    /usr/bin/python3 bench/finetune_bench.py                 # the issue's settings
    /usr/bin/python3 bench/finetune_bench.py --train-rows 1000 --epochs 1 --no-reference

Prints, per epoch, wall time, samples per second and validation accuracy for
both, and ftd's samples per second over PyTorch's. Reads the shared model and
dataset from examples/ (or --model, --train, --validation).
"""
import argparse
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


def head_csv(src, dst, rows):
    """The header and the first `rows` records (the files have no embedded newlines)."""
    with open(src, encoding="utf-8", newline="") as f, open(dst, "w", encoding="utf-8", newline="") as out:
        for i, line in enumerate(f):
            if i > rows:
                break
            out.write(line)


def run_ftd(args, work, train, valid):
    build = args.build
    address_file = os.path.join(work, "address")
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.env))
    log = open(os.path.join(work, "ftd.log"), "w")
    daemon = subprocess.Popen(
        [os.path.join(build, "server/ftd"), "--address=127.0.0.1:0", f"--address_file={address_file}",
         "--metrics_address=127.0.0.1:0",
         f"--data_dir={os.path.join(work, 'ftd-data')}", f"--data_roots={work},{ROOT}",
         f"--cpu_threads={args.cpu_threads}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(600):
            if os.path.exists(address_file) and open(address_file).read().strip():
                break
            time.sleep(0.1)
        address = open(address_file).read().strip()
        ftctl = [os.path.join(build, "client/ftctl"), f"--address={address}"]
        submit = ftctl + ["submit", f"--model={args.model}", f"--train={train}", f"--validation={valid}",
                          f"--epochs={args.epochs}", f"--batch_size={args.batch_size}",
                          f"--learning_rate={args.lr}", f"--max_seq_length={args.max_length}",
                          "--seed=0", f"--freeze={args.freeze}", "--device=cpu", "--json"]
        if args.cache != "none":
            submit += ["--cache=true", f"--cache_dtype={args.cache}"]
        job = json.loads(subprocess.run(submit, check=True, capture_output=True, text=True).stdout)["id"]
        watch = subprocess.run(ftctl + ["watch", job, "--json"], capture_output=True, text=True)
        events = [json.loads(line) for line in watch.stdout.splitlines() if line.strip()]
        got = json.loads(subprocess.run(ftctl + ["get", job, "--json"], check=True, capture_output=True,
                                        text=True).stdout)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
    if got["state"] != "SUCCEEDED":
        sys.exit(f"ftd job {got['state']}: {got.get('error')}")
    epochs = {}
    for e in events:
        msg = e.get("log", {}).get("message", "")
        m = re.match(r"epoch (\d+): ([\d.]+) s, ([\d.]+) samples/s", msg)
        if m:
            epochs[int(m.group(1))] = {"epoch": int(m.group(1)), "seconds": float(m.group(2)),
                                       "samples_per_second": float(m.group(3))}
        if "evaluation" in e:
            epochs.setdefault(e["evaluation"]["epoch"], {})["validation_accuracy"] = e["evaluation"].get("accuracy", 0)
        if "freeze_decision" in e:
            epochs.setdefault("freeze", []).append(e["freeze_decision"])
        if "cache" in e and e["cache"].get("epoch", {}).get("epoch"):
            c = e["cache"]["epoch"]
            epochs.setdefault(c["epoch"], {})["cache"] = {k: float(v) for k, v in c.items()}
    return [epochs[k] for k in sorted(k for k in epochs if isinstance(k, int))], got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "examples/models/bert-mini-6l-256h"))
    ap.add_argument("--train", default=os.path.join(ROOT, "examples/datasets/wordnet-supersense-train-6k.csv"))
    ap.add_argument("--validation", default=os.path.join(ROOT, "examples/datasets/wordnet-supersense-validation-1500.csv"))
    ap.add_argument("--train-rows", type=int, default=6000)
    ap.add_argument("--validation-rows", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--freeze", default="none")
    ap.add_argument("--cache", default="none", choices=["none", "bf16", "fp32"],
                    help="the activation cache and its stored dtype")
    ap.add_argument("--cpu-threads", type=int, default=1, help="ftd --cpu_threads and PyTorch's threads")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the daemon (repeatable)")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="ftd-bench-")
    try:
        train = os.path.join(work, "train.csv")
        valid = os.path.join(work, "validation.csv")
        head_csv(args.train, train, args.train_rows)
        head_csv(args.validation, valid, args.validation_rows)
        print(f"ftd: {args.train_rows} training rows, {args.validation_rows} validation rows, "
              f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, max length {args.max_length}, "
              f"freeze {args.freeze}, cache {args.cache}, {args.cpu_threads} LibTorch thread(s) "
              f"{' '.join(args.env)}", flush=True)
        ftd_epochs, job = run_ftd(args, work, train, valid)
        for e in ftd_epochs:
            line = (f"ftd     epoch {e['epoch']}: {e['seconds']:.1f} s, {e['samples_per_second']:.1f} samples/s, "
                    f"validation accuracy {e.get('validation_accuracy', 0):.4f}")
            c = e.get("cache")
            if c:
                served = c.get("hits", 0) + c.get("partial_hits", 0)
                line += (f"; cache: {served:.0f}/{c.get('examples', 0):.0f} served "
                         f"({c.get('hits', 0):.0f} at the frozen depth), "
                         f"{c.get('misses', 0):.0f} computed, wrote {c.get('bytes_written', 0) / 2**20:.1f} MiB, "
                         f"read {c.get('bytes_read', 0) / 2**20:.1f} MiB, waited {c.get('read_wait_seconds', 0):.2f} s")
            print(line, flush=True)
        for f in job.get("result", {}).get("freeze_timeline", []):
            if f.get("frozen_after", 0) > f.get("frozen_before", 0):
                print(f"ftd     freeze at step {f.get('step', 0)} (epoch {f.get('epoch')}): "
                      f"{f.get('frozen_before', 0)} -> {f['frozen_after']}", flush=True)
        m = job.get("result", {}).get("metrics", {})
        print(f"ftd     train time {m.get('train_seconds', 0):.1f} s, final validation accuracy "
              f"{m.get('validation_accuracy', 0):.4f}", flush=True)
        for s in job.get("cache", {}).get("segments", []):
            print(f"ftd     cache segment layer {s.get('layer')}: {s.get('entries')} entries, "
                  f"{int(s.get('bytes', 0)) / 2**20:.1f} MiB, "
                  f"{int(s.get('bytes', 0)) / max(1, int(s.get('entries', 1))):.0f} bytes/example", flush=True)
        results = {"ftd": ftd_epochs, "ftd_job": job}
        if not args.no_reference:
            out = os.path.join(work, "reference.json")
            subprocess.run([sys.executable, os.path.join(ROOT, "bench/pytorch_reference.py"),
                            f"--model={args.model}", f"--train={train}", f"--validation={valid}",
                            f"--epochs={args.epochs}", f"--batch-size={args.batch_size}", f"--lr={args.lr}",
                            f"--max-length={args.max_length}", f"--threads={args.cpu_threads}",
                            f"--json={out}"], check=True)
            ref = json.load(open(out))["epochs"]
            results["pytorch"] = ref
            ftd_sps = sum(e["samples_per_second"] for e in ftd_epochs) / len(ftd_epochs)
            ref_sps = sum(e["samples_per_second"] for e in ref) / len(ref)
            print(f"\nsamples/s, mean over epochs: ftd {ftd_sps:.1f}, PyTorch {ref_sps:.1f}, "
                  f"ftd / PyTorch = {ftd_sps / ref_sps:.2f}")
            results["ratio"] = ftd_sps / ref_sps
        if args.json:
            json.dump(results, open(args.json, "w"), indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
