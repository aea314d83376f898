#!/usr/bin/env python3
"""The deploy files, checked offline (no cluster, no container engine).

Renders both kustomize overlays (deploy/k8s/overlays/cpu and gpu) with
`kubectl kustomize`, then:
  - validates every object against the Kubernetes API schemas
    (tests/deploy/validate.mjs: the npm package kubernetes-models and its
    Prometheus-operator models, with unknown fields rejected), and checks that
    broken copies (a misspelt field, a wrong type) are rejected;
  - checks what the deployment promises: one replica with a data volume
    claim, named grpc and metrics ports, gRPC probes, a restrictive security
    context, the GPU request with its node selector and toleration, the
    ServiceMonitor, the dashboard ConfigMap equal to
    deploy/grafana/ftd-dashboard.json;
  - checks every ftd flag in the manifests and the Dockerfiles against
    `ftd --helpfull`, and the Dockerfiles' install-deps options.

Usage: k8s_manifests_test.py --ftd=PATH --source-dir=REPO --work-dir=DIR
"""
import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def render(source, overlay):
    result = subprocess.run(["kubectl", "kustomize", os.path.join(source, "deploy/k8s/overlays", overlay)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL: kubectl kustomize {overlay}: {result.stderr}")
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    check(len(found) == 1, f"expected one {kind}, found {len(found)}")
    return found[0] if found else {}


def flags_of(args):
    return [re.match(r"--([a-z_]+)", a).group(1) for a in args if re.match(r"--([a-z_]+)", a)]


def check_overlay(name, objects, dashboard, known_flags):
    sts = one(objects, "StatefulSet")
    spec = sts.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    containers = pod.get("containers", [{}])
    c = containers[0]
    check(spec.get("replicas") == 1, f"{name}: replicas {spec.get('replicas')}, expected 1")
    claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    check("data" in claims and mounts.get("data", {}).get("mountPath") == "/var/lib/ftd",
          f"{name}: the data folder is not a volume claim mounted at /var/lib/ftd")
    check(mounts.get("models", {}).get("readOnly") is True, f"{name}: no read-only models volume")
    args = c.get("args", [])
    check("--data_dir=/var/lib/ftd" in args, f"{name}: --data_dir is not the data volume")
    for flag in flags_of(args):
        check(flag in known_flags, f"{name}: ftd has no flag --{flag}")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("grpc") == 50051 and ports.get("metrics") == 9464,
          f"{name}: container ports {ports}")
    check("--address=0.0.0.0:50051" in args and "--metrics_address=0.0.0.0:9464" in args,
          f"{name}: the flags do not listen on the container ports")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        check(c.get(probe, {}).get("grpc", {}).get("port") == 50051, f"{name}: {probe} is not a gRPC probe")
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
          and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"],
          f"{name}: the security context is not restrictive")
    check(pod.get("terminationGracePeriodSeconds", 30) >= 120, f"{name}: termination grace period too short")
    res = c.get("resources", {})
    check(res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"),
          f"{name}: no memory request and limit")
    if name == "gpu":
        check(str(res.get("limits", {}).get("nvidia.com/gpu")) == "1", "gpu: no nvidia.com/gpu limit")
        check(pod.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true", "gpu: no GPU node selector")
        check(any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])), "gpu: no GPU toleration")
        check("--cpu_slots=0" in args, "gpu: jobs may land on the CPU")
    svc = one(objects, "Service")
    svc_ports = {p["name"]: p["port"] for p in svc.get("spec", {}).get("ports", [])}
    check(svc_ports == {"grpc": 50051, "metrics": 9464}, f"{name}: Service ports {svc_ports}")
    check(spec.get("serviceName") == svc.get("metadata", {}).get("name"), f"{name}: serviceName")
    sm = one(objects, "ServiceMonitor")
    check([e.get("port") for e in sm.get("spec", {}).get("endpoints", [])] == ["metrics"],
          f"{name}: the ServiceMonitor does not scrape the metrics port")
    labels = svc.get("metadata", {}).get("labels", {})
    check(all(labels.get(k) == v for k, v in sm.get("spec", {}).get("selector", {}).get("matchLabels", {}).items()),
          f"{name}: the ServiceMonitor's selector does not match the Service")
    cm = one(objects, "ConfigMap")
    check(cm.get("metadata", {}).get("labels", {}).get("grafana_dashboard") == "1",
          f"{name}: the dashboard ConfigMap lacks the grafana_dashboard label")
    check(json.loads(cm.get("data", {}).get("ftd-dashboard.json", "null")) == dashboard,
          f"{name}: the dashboard ConfigMap differs from deploy/grafana/ftd-dashboard.json")


def validate(work, objects):
    path = os.path.join(work, "objects.json")
    with open(path, "w") as f:
        json.dump(objects, f)
    return subprocess.run(["node", os.path.join(work, "validate.mjs"), path], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftd", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    args = ap.parse_args()
    for tool in ("kubectl", "node", "npm"):
        if shutil.which(tool) is None:
            sys.exit(f"FAIL: {tool} is not installed: run scripts/install-deps.sh")

    helpfull = subprocess.run([args.ftd, "--helpfull"], capture_output=True, text=True).stdout
    known_flags = set(re.findall(r"^\s+--([a-z_]+) ", helpfull, re.M))
    check("metrics_address" in known_flags, "ftd --helpfull lists no --metrics_address: cannot read flags")
    with open(os.path.join(args.source_dir, "deploy/grafana/ftd-dashboard.json")) as f:
        dashboard = json.load(f)

    rendered = {name: render(args.source_dir, name) for name in ("cpu", "gpu")}
    for name, objects in rendered.items():
        check_overlay(name, objects, dashboard, known_flags)

    # The Dockerfiles: ftd's flags, and the install script's options.
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):
        with open(os.path.join(args.source_dir, "deploy/docker", dockerfile)) as f:
            text = f.read()
        cmd = re.search(r"^CMD (\[.*?\])\s*$", text.replace("\\\n", ""), re.M)
        check(cmd is not None, f"{dockerfile}: no CMD")
        if cmd:
            for flag in flags_of(json.loads(cmd.group(1))):
                check(flag in known_flags, f"{dockerfile}: ftd has no flag --{flag}")
        for options in re.findall(r"\./scripts/install-deps\.sh([^&\n\\]*)", text):
            result = subprocess.run(["bash", os.path.join(args.source_dir, "scripts/install-deps.sh"),
                                     *options.split(), "--dry-run"], capture_output=True, text=True)
            check(result.returncode == 0, f"{dockerfile}: install-deps.sh{options}: {result.stderr.strip()}")

    # The schemas, through the npm packages pinned in tests/deploy.
    work = args.work_dir
    os.makedirs(work, exist_ok=True)
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        shutil.copy(os.path.join(args.source_dir, "tests/deploy", name), work)
    if not os.path.isdir(os.path.join(work, "node_modules")):
        npm = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=work,
                             capture_output=True, text=True)
        if npm.returncode != 0:
            sys.exit(f"FAIL: npm ci: {npm.stderr}")
    for name, objects in rendered.items():
        result = validate(work, objects)
        check(result.returncode == 0, f"{name}: schema validation failed:\n{result.stdout}{result.stderr}")
        print(f"{name}: {result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr}")

    # A broken field must fail: a misspelt field and a wrong type.
    for what, mutate in [
        ("a misspelt probe field", lambda o: o["spec"]["template"]["spec"]["containers"][0]
         ["livenessProbe"].update(grpcc={"port": 50051})),
        ("replicas as a string", lambda o: o["spec"].update(replicas="one")),
    ]:
        broken = copy.deepcopy(rendered["gpu"])
        for o in broken:
            if o["kind"] == "StatefulSet":
                mutate(o)
        result = validate(work, broken)
        check(result.returncode != 0, f"the validation accepted {what}")

    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()
