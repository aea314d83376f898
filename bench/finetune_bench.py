#!/usr/bin/python3
"""ftd's end-to-end benchmark: the same fine-tuning job with each freezing and
caching variant and seed, through the real daemon, against plain PyTorch.

Each ftd run uses a fresh daemon on free ports, driven through the gRPC API
with ftctl (submit, watch the event stream, get the result), like a user. The
PyTorch reference (bench/reference/pytorch_reference.py, Debian's
python3-torch) runs the full fine-tuning recipe on the same data and seed, at
its fastest thread count and precision (timed at its start; --reference-threads,
--reference-precision), with the OpenBLAS core ftd's daemon runs (its
OPENBLAS_CORETYPE, unless the environment sets one) and with glibc's allocator
defaults (ftd's settings, --reference-ftd-memory, measured slower for it).
--precision asks ftd for fp32, bf16 or auto (default: the daemon's).

The protocol is the AutoFreeze paper's: a fixed budget of epochs (4), five
AutoFreeze decisions and five validations an epoch, and for each run its
final and its best validation accuracy. Speed-ups are reported for the fixed
budget and as time to target (full fine-tuning's best minus 0.3 points).

Every run is saved as OUT/runs/VARIANT@seedN.json when it finishes, with its
host: the CPU, cores, boot id (one session's machine), one core's GFLOP/s just
before the run, the BLAS core and the precision it ran with. A seed's variants
run back to back on one host (in the given order for the seeds at even
positions in --seeds, reversed for the others), and the report's speed-ups
are means over seeds of ratios between runs on the same host. --resume skips
the runs already saved and resumes on any host; but a seed's runs must all
come from one host, so where a seed's runs are incomplete or span hosts, its
runs saved on another host (or with none recorded) are moved to
OUT/runs/superseded/ and run again here. The report (results.md,
results.json, PNG and SVG plots) is built from every saved run, so a sweep
can span sessions.

    /usr/bin/python3 bench/finetune_bench.py --workload=quick --seeds=0,1,2 --out docs/benchmarks/quick
    /usr/bin/python3 bench/finetune_bench.py --workload=mini-24k --seeds=0,1,2 --out DIR --resume
    /usr/bin/python3 bench/finetune_bench.py --smoke --out /tmp/q                  # CI smoke run
    /usr/bin/python3 bench/finetune_bench.py --variants=full,pytorch --seeds=0     # throughput

Variants: full (no freezing), static:K, autofreeze[:PERCENTILE], autofreeze+bf16
and autofreeze+fp32 (AutoFreeze with the activation cache), pytorch. The
headline pair (full and autofreeze+bf16) and pytorch run with every seed, the
others with the first.
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
    kept = records[:rows] if rows else records
    with open(dst, "w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *kept])
    return len(kept)


def held_out_csv(src, dst, rows, labels):
    """The first `rows` records whose label is in `labels` (None: any)."""
    with open(src, encoding="utf-8", newline="") as f:
        header, *records = list(csv.reader(f))
    col = header.index("label")
    kept = [r for r in records if labels is None or r[col] in labels]
    kept = kept[:rows] if rows else kept
    with open(dst, "w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *kept])
    return len(kept)


def labels_of(path):
    with open(path, encoding="utf-8", newline="") as f:
        header, *records = list(csv.reader(f))
    col = header.index("label")
    return {r[col] for r in records}


# One core's float32 matrix-product speed, best of several bursts: what a
# timed run's speed depends on. A sweep spans sessions, and a session may get
# another kind of machine or a loaded one (one such session ran the same job
# 3.5x slower): each run records it in its host, and runs are only compared
# with runs on the same host (the same boot).
SPEED_PROBE = """
import time, torch
torch.set_num_threads(1)
a, b = torch.randn(512, 512), torch.randn(512, 512)
best = 0.0
for _ in range(7):
    t = time.perf_counter()
    for _ in range(40):
        a @ b
    best = max(best, 2 * 512 ** 3 * 40 / (time.perf_counter() - t) / 1e9)
print(best)
"""


def machine_gflops():
    """One core's best float32 GFLOP/s (a few seconds), or None without torch."""
    try:
        out = subprocess.run(["/usr/bin/python3", "-c", SPEED_PROBE], capture_output=True,
                             text=True, timeout=120, check=True).stdout
        return round(float(out.strip().splitlines()[-1]), 1)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def boot_id():
    """This boot's id: one session's machine (None where Linux does not say)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def this_host(gflops):
    return {"cpu": report.cpu_model(), "cores": os.cpu_count(), "boot_id": boot_id(), "gflops": gflops}


def run_path(out, variant, seed):
    return os.path.join(out, "runs", f"{variant.replace(':', '_')}@seed{seed}.json")


def supersede_other_hosts(plan, out, here):
    """Where a seed's saved runs are incomplete or span hosts, moves those not
    saved on this host (`here`: this boot's id) to OUT/runs/superseded/, so
    that they run again here and the seed's runs all come from one host."""
    moved = []
    for seed in dict.fromkeys(s for _, s in plan):
        group = [v for v, s in plan if s == seed]
        saved = {}
        for v in group:
            path = run_path(out, v, seed)
            if os.path.exists(path):
                with open(path) as f:
                    saved[v] = (json.load(f).get("host") or {}).get("boot_id")
        hosts = set(saved.values())
        if len(saved) == len(group) and len(hosts) <= 1:
            continue  # whole, on one host (any host)
        others = [v for v, b in saved.items() if b != here]
        if not others:
            continue  # what is saved ran here: the rest runs here too
        why = ("its saved runs span hosts" if len(hosts) > 1 else
               f"{len(group) - len(saved)} of its {len(group)} runs are missing")
        os.makedirs(os.path.join(out, "runs", "superseded"), exist_ok=True)
        for v in others:
            path = run_path(out, v, seed)
            base = os.path.basename(path)[:-len(".json")]
            tag = saved[v][:8] if saved[v] else "unknown"
            dest = os.path.join(out, "runs", "superseded", f"{base}.{tag}.json")
            n = 1
            while os.path.exists(dest):
                n += 1
                dest = os.path.join(out, "runs", "superseded", f"{base}.{tag}.{n}.json")
            os.replace(path, dest)
            moved.append((v, seed))
            print(f"--resume: seed {seed}: {why}, and {v} was saved on "
                  f"{'boot ' + saved[v][:8] if saved[v] else 'a host it did not record'} (this is boot "
                  f"{(here or 'unknown')[:8]}): moved to {os.path.relpath(dest, out)}, it runs again here "
                  "so that the seed's runs all come from one host", flush=True)
    return moved


def timestamp(value):
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# The authors' rule (YuhanLiu11/AutoFreeze) in ftctl's options: what
# `authors[:P]` runs, whatever ftd's defaults are.
AUTHORS_RULE = ["--freeze_through_first_above=false", "--max_layers_per_decision=0", "--freeze_smoothing=0",
                "--freeze_keep_trainable=1", "--freeze_start=0"]


def parse_variant(name):
    """(ftctl --freeze value, extra ftctl flags, cache dtype or None) of an ftd variant.

    full | static:K | autofreeze[:PERCENTILE][-through][-capN][-smoothS][-keepK][-startF] |
    authors[:PERCENTILE] (the authors' rule, every option explicit) | geometric[:ALPHA] |
    linear[:START[:LEVEL]], each optionally +bf16 or +fp32 (the activation cache)."""
    freeze, _, cache = name.partition("+")
    if cache not in ("", "bf16", "fp32"):
        raise SystemExit(f"--variants: unknown cache \"{cache}\" in \"{name}\" (bf16 or fp32)")
    policy, *options = freeze.split("-")
    flags = []
    if policy == "full" and not options:
        policy = "none"
    elif re.fullmatch(r"static:\d+", policy) and not options:
        pass
    elif re.fullmatch(r"(autofreeze|authors)(:\d+(\.\d+)?)?", policy):
        if policy.startswith("authors"):
            # The authors' rule, whatever ftd's defaults: every option at its value.
            policy = "autofreeze" + policy[len("authors"):]
            flags += AUTHORS_RULE
        for o in options:
            if o == "through":
                flags.append("--freeze_through_first_above=true")
            elif re.fullmatch(r"cap\d+", o):
                flags.append(f"--max_layers_per_decision={o[3:]}")
            elif re.fullmatch(r"smooth0?\.\d+", o):
                flags.append(f"--freeze_smoothing={o[6:]}")
            elif re.fullmatch(r"keep\d+", o):
                flags.append(f"--freeze_keep_trainable={o[4:]}")
            elif re.fullmatch(r"start0?\.\d+", o):
                flags.append(f"--freeze_start={o[5:]}")
            else:
                raise SystemExit(f"--variants: unknown AutoFreeze option \"{o}\" in \"{name}\" "
                                 "(through, capN, smoothS, keepK, startF)")
    elif re.fullmatch(r"geometric(:0?\.\d+)?", policy) and not options:
        pass
    elif re.fullmatch(r"linear(:\d?\.?\d+(:\d?\.?\d+)?)?", policy) and not options:
        pass
    else:
        raise SystemExit(f"--variants: unknown variant \"{name}\"")
    return policy, flags, cache or None


# Workloads: the quick one (the 6-layer model, 6,000 rows, 3 epochs) and the
# paper-sized ones. Rows are the first N of the shared CSVs.
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
WORKLOADS = {
    "quick": dict(model="examples/models/bert-mini-6l-256h",
                  train="examples/datasets/wordnet-supersense-train-6k.csv",
                  validation="examples/datasets/wordnet-supersense-validation-1500.csv",
                  train_rows=6000, validation_rows=1500, epochs=3),
    "mini-24k": dict(model="examples/models/bert-mini-6l-256h",
                     train="{shared}/datasets/wordnet-supersense-train.csv",
                     validation="{shared}/datasets/wordnet-supersense-validation.csv",
                     train_rows=24000, validation_rows=3000, epochs=4),
    "small-12k": dict(model="{shared}/models/bert-small-12l-256h",
                      train="{shared}/datasets/wordnet-supersense-train.csv",
                      validation="{shared}/datasets/wordnet-supersense-validation.csv",
                      train_rows=12000, validation_rows=3000, epochs=4),
    # The second dataset: all 11,103 training and 1,388 validation rows,
    # longer texts (max length 64).
    "fortunes-mini": dict(model="examples/models/bert-mini-6l-256h",
                          train="{shared}/datasets/fortunes-category-train.csv",
                          validation="{shared}/datasets/fortunes-category-validation.csv",
                          train_rows=None, validation_rows=None, epochs=4, max_length=64),
}


def workload_path(value):
    value = value.format(shared=SHARED)
    return value if os.path.isabs(value) else os.path.join(ROOT, value)


class Daemon:
    """ftd on free ports in its own data folder; stop() returns its peak RSS."""

    def __init__(self, args, work, flags=None):
        """`flags`: the daemon's flags besides its ports and folders (default: --cpu_threads)."""
        self.work = work
        address_file = os.path.join(work, "address")
        env = dict(os.environ, **dict(kv.split("=", 1) for kv in getattr(args, "env", [])))
        self.log_path = os.path.join(work, "ftd.log")
        self.log = open(self.log_path, "w")
        if flags is None:
            flags = [f"--cpu_threads={args.cpu_threads}"]
        self.process = subprocess.Popen(
            [os.path.join(args.build, "server/ftd"), "--address=127.0.0.1:0",
             f"--address_file={address_file}", "--metrics_address=127.0.0.1:0",
             f"--data_dir={os.path.join(work, 'ftd-data')}", f"--data_roots={args.work},{ROOT},{args.model}"]
            + flags,
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

    def kernels(self):
        """The BLAS core and CPU features the daemon runs (ftctl info's "kernels"; {} before it had them)."""
        return json.loads(self.run("info", "--json").stdout).get("kernels", {})

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.log.close()
        return usage.ru_maxrss * 1024  # KiB on Linux


def run_ftd(args, name, seed, train, valid):
    freeze, flags, cache = parse_variant(name)
    if freeze.startswith("autofreeze"):
        percentile = freeze.partition(":")[2] or "50"
        freeze = f"autofreeze:{percentile}:{args.decisions_per_epoch}"
    work = tempfile.mkdtemp(prefix="ftd-bench-", dir=args.work)
    daemon = Daemon(args, work)
    try:
        kernels = daemon.kernels()
        if kernels.get("blas_core") and not args.ftd_blas_core:
            args.ftd_blas_core = kernels["blas_core"]
        submit = ["submit", "--upload=false", f"--model={args.model}", f"--train={train}", f"--validation={valid}",
                  f"--epochs={args.epochs}", f"--batch_size={args.batch_size}",
                  f"--learning_rate={args.lr}", f"--max_seq_length={args.max_length}",
                  f"--seed={seed}", f"--freeze={freeze}", "--device=cpu", f"--name={name}",
                  f"--evaluations_per_epoch={args.evaluations_per_epoch}", "--json"]
        submit += flags
        if args.precision:
            submit.append(f"--precision={args.precision}")
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
    # (A daemon before the v1 renames says "SUCCEEDED".)
    if job["state"] not in ("JOB_STATE_SUCCEEDED", "SUCCEEDED"):
        raise SystemExit(f"{name}: the job ended {job['state']}: {job.get('error')}\n"
                         f"{open(daemon.log_path).read()[-3000:]}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    r = summarize_ftd(name, seed, job, events, wall, peak_rss)
    r["kernels"], r["blas_core"] = kernels, kernels.get("blas_core")
    # PRECISION_FP32 or PRECISION_BF16; a daemon from before the field ran fp32.
    precision = job.get("result", {}).get("precision", "")
    r["precision"] = "bf16" if precision == "PRECISION_BF16" else "fp32"
    return r


def summarize_ftd(name, seed, job, events, wall, peak_rss):
    epochs = {}
    evaluations, decisions = [], []
    steps_per_epoch = None
    for e in events:
        msg = e.get("log", {}).get("message", "")
        m = re.match(r"epoch (\d+): ([\d.]+) s, ([\d.]+) samples/s, training loss ([\d.]+)", msg)
        if m:
            epochs.setdefault(int(m.group(1)), {}).update(
                seconds=float(m.group(2)), samples_per_second=float(m.group(3)),
                train_loss=float(m.group(4)))
        if "progress" in e and e["progress"].get("total_epochs"):
            p = e["progress"]
            steps_per_epoch = int(p["total_steps"]) // int(p["total_epochs"])
        if "evaluation" in e:
            ev = e["evaluation"]
            evaluations.append({"epoch": ev["epoch"], "step": int(ev.get("step", 0)),
                                "train_seconds": float(ev.get("train_seconds", 0.0)),
                                "accuracy": ev.get("accuracy", 0.0), "loss": ev.get("loss", 0.0),
                                "macro_f1": ev.get("macro_f1", 0.0)})
        if "freeze_decision" in e:
            f = e["freeze_decision"]
            decisions.append({"step": int(f.get("step", 0)), "epoch": f.get("epoch", 1),
                              "frozen_before": f.get("frozen_before", 0), "frozen_after": f.get("frozen_after", 0),
                              "total_layers": f.get("total_layers", 0), "baseline": f.get("baseline", False),
                              "threshold": f.get("threshold", 0.0),
                              "layer_change_rates": f.get("layer_change_rates", []),
                              "trained_fraction": f.get("trainable_parameter_fraction", 1.0)})
        if "cache" in e and e["cache"].get("epoch", {}).get("epoch"):
            c = e["cache"]["epoch"]
            epochs.setdefault(c["epoch"], {})["cache"] = {
                k: float(c.get(k, 0)) for k in ("examples", "hits", "partial_hits", "misses", "corrupt",
                                                "bytes_written", "bytes_read", "read_wait_seconds")}
    if steps_per_epoch:
        for ev in evaluations:
            ev["epoch_end"] = ev["step"] % steps_per_epoch == 0
    metrics = job.get("result", {}).get("metrics", {})
    cache = job.get("cache", {})
    segments = cache.get("segments", [])
    return {
        "variant": name, "seed": seed, "engine": "ftd", "job_id": job["id"],
        "wall_seconds": wall,
        "train_seconds": float(metrics.get("train_seconds", 0.0)),
        "epochs": [dict(epoch=k, **epochs[k]) for k in sorted(epochs)],
        "evaluations": evaluations,
        "final_accuracy": float(metrics.get("validation_accuracy", 0.0)),
        "best_accuracy": max((e["accuracy"] for e in evaluations), default=0.0),
        "decisions": decisions,
        "freezes": [d for d in decisions if d["frozen_after"] > d["frozen_before"]],
        "seconds_by_depth": {k[len("train_seconds_frozen_"):]: v for k, v in metrics.items()
                             if k.startswith("train_seconds_frozen_")},
        "cache": None if not job.get("spec", {}).get("activation_cache", {}).get("enabled") else {
            "dtype": cache.get("dtype", "").removeprefix("DTYPE_"),
            "bytes": sum(int(s.get("bytes", 0)) for s in segments),
            "entries": sum(int(s.get("entries", 0)) for s in segments),
            "disabled_reason": cache.get("disabled_reason", ""),
        },
        "peak_rss_bytes": peak_rss,
    }


def ftd_blas_core(args):
    """The OpenBLAS core ftd's daemon runs: from an ftd run of this sweep, else
    from a daemon started for it (about a second). None where it does not say."""
    if args.ftd_blas_core is None:
        work = tempfile.mkdtemp(prefix="ftd-bench-", dir=args.work)
        daemon = Daemon(args, work)
        try:
            args.ftd_blas_core = daemon.kernels().get("blas_core") or ""
        finally:
            daemon.stop()
            shutil.rmtree(work, ignore_errors=True)
    return args.ftd_blas_core or None


def run_pytorch(args, seed, train, valid):
    out = os.path.join(args.work, "pytorch.json")
    env = dict(os.environ)
    # The same BLAS kernels as ftd's: OpenBLAS may fall back to a weaker core
    # than the CPU's, which ftd corrects for itself; an OPENBLAS_CORETYPE set
    # by the caller applies to both.
    wanted = env.get("OPENBLAS_CORETYPE") or ftd_blas_core(args)
    if wanted and "OPENBLAS_CORETYPE" not in env:
        env["OPENBLAS_CORETYPE"] = wanted
    start = time.time()
    if args.reference_ftd_memory:
        # What ftd does with mallopt (server/training/engine/cpu_allocator.h).
        # Measured slower for PyTorch (43.4 against 61.5 samples/s on the
        # quick workload), so not the default: the reference runs at its best.
        env.update(MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(1 << 30), MALLOC_ARENA_MAX="1")
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench/reference/pytorch_reference.py"),
         f"--model={args.model}", f"--train={train}", f"--validation={valid}",
         f"--epochs={args.epochs}", f"--batch-size={args.batch_size}", f"--lr={args.lr}",
         f"--max-length={args.max_length}", f"--seed={seed}", f"--threads={args.reference_threads}",
         f"--precision={args.reference_precision}",
         f"--evaluations-per-epoch={args.evaluations_per_epoch}", f"--json={out}"], env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the PyTorch reference failed")
    wall = time.time() - start
    ref = json.load(open(out))
    if wanted and (ref.get("blas_core") or "").lower() != wanted.lower():
        print(f"warning: the PyTorch reference ran OpenBLAS's {ref.get('blas_core')} kernels, "
              f"not {wanted}", flush=True)
    evaluations = ref["evaluations"]
    last_of_epoch = {e["epoch"]: i for i, e in enumerate(evaluations)}
    for i, e in enumerate(evaluations):
        e["epoch_end"] = last_of_epoch[e["epoch"]] == i
    return {"variant": "pytorch", "seed": seed, "engine": "pytorch", "wall_seconds": wall,
            "train_seconds": sum(e["seconds"] for e in ref["epochs"]), "epochs": ref["epochs"],
            "evaluations": evaluations, "final_accuracy": evaluations[-1]["accuracy"],
            "best_accuracy": max(e["accuracy"] for e in evaluations), "decisions": [], "freezes": [],
            "seconds_by_depth": {}, "cache": None, "threads": ref["threads"],
            "precision": ref.get("precision", "fp32"), "blas_core": ref.get("blas_core"),
            "calibration_ms_per_step": ref.get("calibration_ms_per_step", {}),
            "calibration_cut_short": ref.get("calibration_cut_short", []),
            "calibration_skipped": ref.get("calibration_skipped", []),
            "peak_rss_bytes": usage.ru_maxrss * 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--workload", default="quick", choices=sorted(WORKLOADS),
                    help="model, data and epochs (flags below override them)")
    ap.add_argument("--model")
    ap.add_argument("--train")
    ap.add_argument("--validation")
    ap.add_argument("--train-rows", type=int)
    ap.add_argument("--validation-rows", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, help="(48, or the workload's)")
    ap.add_argument("--evaluations-per-epoch", type=int, default=5, help="validations an epoch (paper: 5)")
    ap.add_argument("--decisions-per-epoch", type=int, default=5, help="AutoFreeze decision points an epoch")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds for the headline pair and pytorch")
    ap.add_argument("--variants", default="",
                    help="comma-separated: full, static:K, autofreeze[:P], autofreeze+bf16, autofreeze+fp32, "
                         "pytorch (default: full, autofreeze+bf16, pytorch, autofreeze, static:K with "
                         "K = 2/3 of the layers)")
    ap.add_argument("--headline", default="full,autofreeze+bf16,pytorch",
                    help="the variants that run with every seed; the others run with the first")
    ap.add_argument("--no-reference", action="store_true", help="leave out the PyTorch reference")
    ap.add_argument("--cpu-threads", type=int, default=1, help="ftd --cpu_threads")
    ap.add_argument("--precision", default="", choices=("", "fp32", "bf16", "auto"), metavar="fp32|bf16|auto",
                    help="ftd jobs' precision (ftctl submit --precision); default: the daemon's")
    ap.add_argument("--reference-threads", default="auto", help="PyTorch's threads, or auto (the fastest)")
    ap.add_argument("--reference-precision", default="auto", choices=("fp32", "bf16", "auto"),
                    help="PyTorch's precision (bf16: autocast), or auto (the faster, timed with the threads)")
    ap.add_argument("--reference-ftd-memory", action="store_true",
                    help="run PyTorch with ftd's allocator settings (measured slower for it) instead of "
                         "glibc's defaults")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the daemon (repeatable)")
    ap.add_argument("--smoke", "--quick-smoke", action="store_true",
                    help="smoke run: 256 rows, 2 epochs, max length 32, 2 seeds; checks the report, not timings")
    ap.add_argument("--out", required=True, help="folder for runs/, results.json, results.md and the plots")
    ap.add_argument("--resume", action="store_true",
                    help="skip the runs already saved in OUT/runs/ (on any host); where a seed's saved runs are "
                         "incomplete or span hosts, those from other hosts move to OUT/runs/superseded/ and run "
                         "again here")
    ap.add_argument("--title", default="", help="a title for the report")
    ap.add_argument("--keep", action="store_true", help="keep the daemons' data folders")
    args = ap.parse_args()
    w = WORKLOADS[args.workload]
    args.model = args.model or workload_path(w["model"])
    args.train = args.train or workload_path(w["train"])
    args.validation = args.validation or workload_path(w["validation"])
    args.train_rows = args.train_rows or w["train_rows"]
    args.validation_rows = args.validation_rows or w["validation_rows"]
    args.epochs = args.epochs or w["epochs"]
    args.max_length = args.max_length or w.get("max_length", 48)
    if args.smoke:
        args.train_rows, args.validation_rows, args.epochs, args.max_length = 256, 64, 2, 32
        args.evaluations_per_epoch, args.decisions_per_epoch = 2, 4
        if args.seeds == "0":
            args.seeds = "0,1"
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]

    layers = json.load(open(os.path.join(args.model, "config.json")))["num_hidden_layers"]
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    else:
        variants = ["full", "autofreeze+bf16", "pytorch", "autofreeze", f"static:{(2 * layers) // 3}"]
        if args.smoke:  # a prefix frozen from the start: the cache's path runs whatever AutoFreeze does
            variants[-1] += "+bf16"
    if args.no_reference:
        variants = [v for v in variants if v != "pytorch"]
    for v in variants:
        if v != "pytorch":
            parse_variant(v)
    headline = {v.strip() for v in args.headline.split(",")}
    # Each seed's runs back to back, on one host; the order alternates
    # between seeds, so that neither end of a group is always the same variant.
    plan = []
    for i, seed in enumerate(seeds):
        group = [v for v in variants if v in headline or seed == seeds[0]]
        plan += [(v, seed) for v in (group if i % 2 == 0 else group[::-1])]
    args.ftd_blas_core = None

    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    args.work = tempfile.mkdtemp(prefix="ftd-bench-")
    try:
        train = os.path.join(args.work, "train.csv")
        valid = os.path.join(args.work, "validation.csv")
        train_rows = head_csv(args.train, train, args.train_rows)
        # Validation rows whose labels training has (a small --train-rows may miss some).
        valid_rows = held_out_csv(args.validation, valid, args.validation_rows, labels_of(train))
        workload = {
            "name": args.workload, "model": os.path.basename(os.path.normpath(args.model)), "layers": layers,
            "train": os.path.basename(args.train), "train_rows": train_rows, "validation_rows": valid_rows,
            "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr,
            "max_length": args.max_length, "evaluations_per_epoch": args.evaluations_per_epoch,
            "decisions_per_epoch": args.decisions_per_epoch, "seeds": seeds,
            "cpu_threads": args.cpu_threads, "env": args.env, "precision": args.precision or "default",
            "reference_precision": args.reference_precision,
            "cpu": report.cpu_model(), "cores": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["/usr/bin/python3", "bench/finetune_bench.py"] + sys.argv[1:]),
        }
        saved = os.path.join(args.out, "workload.json")
        if args.resume and os.path.exists(saved):
            previous = json.load(open(saved))
            for key in ("model", "train_rows", "validation_rows", "epochs", "batch_size", "learning_rate",
                        "max_length", "evaluations_per_epoch", "decisions_per_epoch", "precision",
                        "reference_precision"):
                if key in ("precision", "reference_precision") and key not in previous:
                    continue  # saved before the option
                if previous.get(key) != workload[key]:
                    raise SystemExit(f"--resume: {saved} has {key}={previous.get(key)!r}, this run "
                                     f"{workload[key]!r}; use another --out")
            workload["date"] = previous["date"] + " .. " + workload["date"]
        with open(saved, "w") as f:
            json.dump(workload, f, indent=1)
        print(f"workload {args.workload}: {workload['model']} ({layers} layers), {train_rows} training rows, "
              f"{valid_rows} validation rows, {args.epochs} epochs, batch {args.batch_size}, "
              f"max length {args.max_length}; runs: {', '.join(f'{v}@{s}' for v, s in plan)}", flush=True)
        if args.resume:
            supersede_other_hosts(plan, args.out, boot_id())
        for v, seed in plan:
            path = run_path(args.out, v, seed)
            if args.resume and os.path.exists(path):
                print(f"--- {v} seed {seed}: saved already", flush=True)
                continue
            print(f"--- {v} seed {seed}", flush=True)
            speed = machine_gflops()  # just before the run, as the saved runs were
            r = run_pytorch(args, seed, train, valid) if v == "pytorch" else run_ftd(args, v, seed, train, valid)
            r["host"] = dict(this_host(speed), blas_core=r.pop("blas_core"), precision=r.pop("precision"))
            r["run_format"] = 2  # with its host (report.check() requires one)
            with open(path + ".tmp", "w") as f:
                json.dump(r, f, indent=1)
            os.replace(path + ".tmp", path)
            print(report.one_line(r), flush=True)
        doc, text = report.write(args.out, workload, report.load_runs(args.out), title=args.title)
        print("\n" + text)
        problems = report.check(doc, args.epochs)
        print(f"wrote {args.out}/results.json, results.md and the plots")
        if problems:
            raise SystemExit("the report is not well formed:\n  " + "\n  ".join(problems))
    finally:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
