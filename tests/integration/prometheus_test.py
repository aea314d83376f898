#!/usr/bin/env python3
"""ftd's metrics against a real Prometheus (Debian's prometheus package).

Starts the real ftd on loopback, checks its /metrics with `promtool check
metrics` (no errors, no lint warnings), starts a real Prometheus scraping it
every second, runs a small job through ftctl (static freezing with the
activation cache, so that every family has series), then evaluates every
PromQL expression of deploy/grafana/ftd-dashboard.json through Prometheus's
HTTP API: each must parse and return at least one series.

Usage: prometheus_test.py --ftd=PATH --ftctl=PATH --source-dir=REPO
"""

import argparse
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

# What Grafana puts in for its variables when the dashboard shows every job.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job_id": ".*"}


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def wait_for(what, predicate, timeout, process=None, log=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            fail(f"{what}: the process exited with {process.returncode}\n{read(log)}")
        try:
            value = predicate()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.2)
    fail(f"{what}: not after {timeout} s\n{read(log) if log else ''}")


def read(path):
    try:
        with open(path) as f:
            return f.read()[-4000:]
    except OSError:
        return ""


def split_csv(source, train, validation, train_rows, validation_rows):
    """The first rows for training, the next ones whose labels training has
    for validation."""
    with open(source, newline="") as f:
        header, *rows = list(csv.reader(f))
    label = header.index("label")
    seen = {row[label] for row in rows[:train_rows]}
    held_out = [row for row in rows[train_rows:] if row[label] in seen][:validation_rows]
    for path, part in ((train, rows[:train_rows]), (validation, held_out)):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([header, *part])


def dashboard_queries(path):
    """(panel title, expression) for every target and query variable."""
    with open(path) as f:
        dashboard = json.load(f)
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        # Grafana's label_values(metric, label) lists the label's values of
        # the metric's series: the metric must have series.
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
        queries.append((f"variable {variable['name']}", m.group(1) if m else query))
    return queries


def substitute(expr):
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    leftover = re.findall(r"\$\{?\w+", expr)
    if leftover:
        fail(f"the test does not know the dashboard variables {leftover} in: {expr}")
    return expr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftd", required=True)
    ap.add_argument("--ftctl", required=True)
    ap.add_argument("--source-dir", required=True)
    args = ap.parse_args()

    prometheus = shutil.which("prometheus")
    promtool = shutil.which("promtool")
    if prometheus is None or promtool is None:
        fail("prometheus and promtool are not installed: run scripts/install-deps.sh "
             "(Debian package prometheus)")

    tmp = tempfile.mkdtemp(prefix="ftd-prometheus-test-")
    processes = []

    def cleanup():
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    try:
        run(args, tmp, processes, prometheus, promtool)
    finally:
        cleanup()
    print("PASS")


def run(args, tmp, processes, prometheus, promtool):
    examples = os.path.join(args.source_dir, "examples")
    split_csv(os.path.join(examples, "datasets/wordnet-supersense-train-6k.csv"),
              os.path.join(tmp, "train.csv"), os.path.join(tmp, "validation.csv"), 96, 32)

    # The daemon, on free ports.
    ftd_log = os.path.join(tmp, "ftd.log")
    address_file = os.path.join(tmp, "address")
    with open(ftd_log, "w") as log:
        ftd = subprocess.Popen(
            [args.ftd, "--address=127.0.0.1:0", f"--address_file={address_file}",
             "--metrics_address=127.0.0.1:0", f"--data_dir={tmp}/data",
             f"--data_roots={tmp},{examples}"],
            stdout=log, stderr=subprocess.STDOUT)
    processes.append(ftd)
    address = wait_for("ftd's address", lambda: open(address_file).read().strip(), 60, ftd, ftd_log)

    def ftctl(*argv, check=True):
        result = subprocess.run([args.ftctl, f"--address={address}", *argv],
                                capture_output=True, text=True, timeout=600)
        if check and result.returncode != 0:
            fail(f"ftctl {' '.join(argv)} exited {result.returncode}: {result.stderr}\n{read(ftd_log)}")
        return result

    info = json.loads(ftctl("--json", "info").stdout)
    metrics_address = info.get("metricsAddress") or info.get("metrics_address")
    if not metrics_address:
        fail(f"ftctl info shows no metrics address: {info}")
    metrics_url = f"http://{metrics_address}/metrics"

    def promtool_check(stage):
        text = http_get(metrics_url)
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                                text=True)
        problems = (result.stdout + result.stderr).strip()
        if result.returncode != 0 or problems:
            fail(f"promtool check metrics ({stage}) exited {result.returncode}:\n{problems}")
        return text

    promtool_check("before any job")

    # Prometheus, scraping every second.
    prom_port = free_port()
    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: ftd\n"
                f"    static_configs:\n      - targets: ['{metrics_address}']\n")
    prom_log = os.path.join(tmp, "prometheus.log")
    with open(prom_log, "w") as log:
        prom = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp}/tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT)
    processes.append(prom)
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(expr):
        body = json.loads(http_get(f"{api}/query?" + urllib.parse.urlencode({"query": expr})))
        if body.get("status") != "success":
            raise ValueError(body)
        return body["data"]["result"]

    def scraped():
        targets = json.loads(http_get(f"{api}/targets"))["data"]["activeTargets"]
        return targets and all(t["health"] == "up" for t in targets)

    wait_for("Prometheus scraping ftd", scraped, 60, prom, prom_log)

    # A small job: static freezing of 2 layers with the activation cache, so
    # that the second epoch reads what the first wrote; and a failing request.
    submitted = ftctl("submit", "--upload=false", "--name=metrics", f"--model={examples}/models/bert-mini-6l-256h",
                      f"--train={tmp}/train.csv", f"--validation={tmp}/validation.csv",
                      "--epochs=2", "--batch_size=16", "--max_seq_length=32", "--freeze=static:2",
                      "--cache=true").stdout
    job = submitted.split()[1]
    watched = ftctl("watch", job, check=False)
    if watched.returncode != 0:
        fail(f"{job} did not succeed: {watched.stdout}\n{watched.stderr}\n{read(ftd_log)}")
    if ftctl("get", "job-999", check=False).returncode == 0:
        fail("ftctl get job-999 succeeded")

    text = promtool_check("after a job")
    for needle in [f'ftd_job_frozen_layers{{device="cpu:0",job_id="{job}",model="bert-mini-6l-256h"}} 2',
                   'ftd_jobs_finished_total{outcome="succeeded"} 1',
                   'ftd_grpc_requests_total{code="NOT_FOUND",method="/ftd.v1.FineTuning/GetJob"} 1']:
        if needle not in text:
            fail(f"/metrics lacks {needle!r}:\n{text}")

    # Prometheus has scraped the job's end.
    wait_for("the finished job in Prometheus",
             lambda: query('ftd_jobs_finished_total{outcome="succeeded"} == 1'), 30, prom, prom_log)
    time.sleep(3)  # a few more scrapes, for rate()

    failures = []
    queries = dashboard_queries(os.path.join(args.source_dir, "deploy/grafana/ftd-dashboard.json"))
    for title, expr in queries:
        promql = substitute(expr)
        try:
            result = query(promql)
        except (OSError, urllib.error.URLError, ValueError) as e:
            detail = e.read().decode() if isinstance(e, urllib.error.HTTPError) else str(e)
            failures.append(f"{title}: {promql}\n    does not evaluate: {detail}")
            continue
        if not result:
            failures.append(f"{title}: {promql}\n    returns no series")
    if failures:
        fail(f"{len(failures)} of {len(queries)} dashboard queries fail:\n" + "\n".join(failures))

    # The values say what happened: the cache served the second epoch.
    ratio = query(f'(ftd_cache_hits_total{{job_id="{job}"}} + ftd_cache_partial_hits_total{{job_id="{job}"}})'
                  f' / (ftd_cache_hits_total{{job_id="{job}"}} + ftd_cache_partial_hits_total{{job_id="{job}"}}'
                  f' + ftd_cache_misses_total{{job_id="{job}"}})')
    if not ratio or abs(float(ratio[0]["value"][1]) - 0.5) > 1e-9:
        fail(f"cache hit ratio over two epochs should be 0.5 (all of epoch 2): {ratio}")
    print(f"{len(queries)} dashboard queries evaluated in Prometheus, each with series; "
          f"{job} cache hit ratio {ratio[0]['value'][1]}")


if __name__ == "__main__":
    main()
