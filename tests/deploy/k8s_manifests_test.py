#!/usr/bin/env python3
"""The deploy files, checked offline (no cluster, no container engine).

Renders the kustomize overlays (deploy/k8s/overlays/cpu, gpu and pool) with
`kubectl kustomize`, then:
  - validates every object against the Kubernetes API schemas
    (tests/deploy/validate.mjs: the npm package kubernetes-models and its
    Prometheus-operator models, with unknown fields rejected), and checks that
    broken copies (a misspelt field, a wrong type) are rejected;
  - checks what the deployment promises: one replica with a data volume
    claim, named grpc and metrics ports, TLS and tokens from mounted Secrets
    (no plaintext), exec probes running `ftctl health` over TLS, a
    restrictive security context, the GPU request with its node selector and
    toleration, a NetworkPolicy admitting gRPC from labelled clients and
    metrics from the monitoring namespace only, the ServiceMonitor scraping
    HTTPS with the Secrets' CA and token, the dashboard ConfigMap equal to
    deploy/grafana/ftd-dashboard.json;
  - checks every ftd flag in the manifests and the Dockerfiles against
    `ftd --helpfull` (the probes' against `ftctl --help`), and the
    Dockerfiles' install-deps options;
  - the pool overlay: the coordinator as the gpu overlay's daemon serving the
    replicas' store, workers joining it over TLS with an admin token from a
    Secret (never the coordinator's key), a NetworkPolicy that admits the
    pool's traffic from the pool's pods only;
  - runs the real ftd with each overlay's arguments (the Secrets' files made
    here with openssl, paths moved to a temporary folder, loopback ports),
    then its probe command, and scrapes its metrics as the ServiceMonitor
    says (HTTPS, the server name, the CA, the token) and without the token;
    for the pool, a worker with its StatefulSet's arguments attaches to the
    coordinator over TLS (one CPU device in place of its GPU), and one with
    a user's token is refused.

Usage: k8s_manifests_test.py --ftd=PATH --ftctl=PATH --source-dir=REPO --work-dir=DIR
"""
import argparse
import copy
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

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


def secret_mounts(pod, container):
    """mountPath -> Secret name, for the container's Secret volumes."""
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    return {m["mountPath"]: secrets[m["name"]] for m in container.get("volumeMounts", [])
            if m["name"] in secrets}


def flag_value(args, flag):
    for a in args:
        if a.startswith(f"--{flag}="):
            return a.split("=", 1)[1]
    return None


def check_overlay(name, objects, dashboard, known_flags, ftctl_flags):
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
    # TLS and tokens by default, from Secrets mounted read-only.
    check("--allow_insecure" not in args, f"{name}: serves plaintext (--allow_insecure)")
    mounts_of_secrets = secret_mounts(pod, c)
    for flag in ("tls_cert", "tls_key", "tokens_file", "metrics_token_file"):
        path = flag_value(args, flag)
        check(path is not None, f"{name}: no --{flag}")
        if path:
            check(os.path.dirname(path) in mounts_of_secrets, f"{name}: --{flag}={path} is not in a mounted Secret")
    check(flag_value(args, "metrics_tls") in (None, "true"), f"{name}: the metrics endpoint is not on TLS")
    # gRPC probes cannot present TLS: ftctl health inside the container.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = c.get(probe, {}).get("exec", {}).get("command", [])
        check(command[:1] == ["ftctl"] and command[-1:] == ["health"], f"{name}: {probe} is not `ftctl health`")
        for flag in flags_of(command):
            check(flag in ftctl_flags, f"{name}: {probe}: ftctl has no flag --{flag}")
        ca = flag_value(command, "tls_ca")
        check(ca is not None and os.path.dirname(ca) in mounts_of_secrets,
              f"{name}: {probe} does not verify the server against a mounted CA")
    policy = one(objects, "NetworkPolicy")
    pspec = policy.get("spec", {})
    pod_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    check(all(pod_labels.get(k) == v for k, v in pspec.get("podSelector", {}).get("matchLabels", {}).items())
          and pspec.get("podSelector", {}).get("matchLabels"), f"{name}: the NetworkPolicy does not select ftd's pod")
    check("Ingress" in pspec.get("policyTypes", []), f"{name}: the NetworkPolicy does not govern ingress")
    rules = {}
    for rule in pspec.get("ingress", []):
        check(rule.get("from"), f"{name}: a NetworkPolicy rule admits everyone")
        for port in rule.get("ports", []):
            rules[port.get("port")] = rule.get("from", [])
    check(set(rules) == {"grpc", "metrics"}, f"{name}: the NetworkPolicy's ports are {sorted(rules)}")
    check(all(f.get("podSelector", {}).get("matchLabels") == {"ftd.dev/client": "true"}
              and not f.get("podSelector", {}).get("matchExpressions")
              for f in rules.get("grpc", [{}])),
          f"{name}: gRPC is not admitted from exactly the pods labelled ftd.dev/client: {rules.get('grpc')}")
    check(all(f.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
              and "podSelector" not in f for f in rules.get("metrics", [{}])),
          f"{name}: metrics are admitted from outside the monitoring namespace")
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
          and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"],
          f"{name}: the security context is not restrictive")
    check(pod.get("terminationGracePeriodSeconds", 30) >= 120, f"{name}: termination grace period too short")
    res = c.get("resources", {})
    check(res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"),
          f"{name}: no memory request and limit")
    if name in ("gpu", "pool"):
        check(str(res.get("limits", {}).get("nvidia.com/gpu")) == "1", "gpu: no nvidia.com/gpu limit")
        check(pod.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true", "gpu: no GPU node selector")
        check(any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])), "gpu: no GPU toleration")
        check("--cpu_devices=0" in args, "gpu: jobs may land on the CPU")
    svc = one(objects, "Service")
    svc_ports = {p["name"]: p["port"] for p in svc.get("spec", {}).get("ports", [])}
    # (The pool's coordinator also names the replicas' store: check_pool.)
    svc_ports.pop("rendezvous", None) if name == "pool" else None
    check(svc_ports == {"grpc": 50051, "metrics": 9464}, f"{name}: Service ports {svc_ports}")
    check(spec.get("serviceName") == svc.get("metadata", {}).get("name"), f"{name}: serviceName")
    sm = one(objects, "ServiceMonitor")
    endpoints = sm.get("spec", {}).get("endpoints", [])
    check([e.get("port") for e in endpoints] == ["metrics"], f"{name}: the ServiceMonitor does not scrape the metrics port")
    for e in endpoints:
        check(e.get("scheme") == "https", f"{name}: the ServiceMonitor scrapes plaintext")
        tls_secret = mounts_of_secrets.get(os.path.dirname(flag_value(args, "tls_cert") or ""))
        check(e.get("tlsConfig", {}).get("ca", {}).get("secret", {}).get("name") == tls_secret,
              f"{name}: the ServiceMonitor does not verify against the {tls_secret} Secret's CA")
        token_secret = mounts_of_secrets.get(os.path.dirname(flag_value(args, "metrics_token_file") or ""))
        check(e.get("bearerTokenSecret", {}).get("name") == token_secret,
              f"{name}: the ServiceMonitor does not send the {token_secret} Secret's token")
    labels = svc.get("metadata", {}).get("labels", {})
    check(all(labels.get(k) == v for k, v in sm.get("spec", {}).get("selector", {}).get("matchLabels", {}).items()),
          f"{name}: the ServiceMonitor's selector does not match the Service")
    cm = one(objects, "ConfigMap")
    check(cm.get("metadata", {}).get("labels", {}).get("grafana_dashboard") == "1",
          f"{name}: the dashboard ConfigMap lacks the grafana_dashboard label")
    check(json.loads(cm.get("data", {}).get("ftd-dashboard.json", "null")) == dashboard,
          f"{name}: the dashboard ConfigMap differs from deploy/grafana/ftd-dashboard.json")


POOL_OBJECTS = {"ftd-worker", "ftd-workers", "ftd-pool"}


def coordinator_objects(objects):
    """The pool overlay's objects but its workers' and the pool's policy: the coordinator's
    deployment, which must keep every promise of the gpu overlay's."""
    return [o for o in objects if o["metadata"]["name"] not in POOL_OBJECTS]


def env_from_field(container, name, field):
    return any(e.get("name") == name and e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == field
               for e in container.get("env", []))


def check_pool(objects, known_flags):
    """The pool overlay's own promises: the coordinator serves the replicas' store, the workers
    join it over TLS with an admin's token, and the pool's traffic is the pool's alone."""
    sts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "StatefulSet"}
    check(set(sts) == {"ftd", "ftd-worker"}, f"pool: StatefulSets {sorted(sts)}")
    if set(sts) != {"ftd", "ftd-worker"}:
        return
    coordinator = sts["ftd"]["spec"]["template"]
    c = coordinator["spec"]["containers"][0]
    args = c.get("args", [])
    check(flag_value(args, "rendezvous_address") == "0.0.0.0:29400", "pool: the coordinator serves no store")
    check(flag_value(args, "collective_host") == "$(POD_IP)" and env_from_field(c, "POD_IP", "status.podIP"),
          "pool: the coordinator's collectives do not listen on its pod's address")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("rendezvous") == 29400, f"pool: the coordinator's ports {ports}")
    svc = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "ftd"]
    check(svc and {p["name"]: p["port"] for p in svc[0]["spec"]["ports"]}.get("rendezvous") == 29400,
          "pool: the Service does not name the store's port")

    workers = sts["ftd-worker"]
    wspec = workers["spec"]
    check(wspec.get("replicas", 1) >= 1 and wspec.get("serviceName") == "ftd-workers",
          "pool: the workers are not a StatefulSet governed by ftd-workers")
    headless = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "ftd-workers"]
    check(headless and headless[0]["spec"].get("clusterIP") == "None", "pool: ftd-workers is not headless")
    wpod = wspec["template"]["spec"]
    w = wpod["containers"][0]
    wargs = w.get("args", [])
    for flag in flags_of(wargs):
        check(flag in known_flags, f"pool: the worker's ftd has no flag --{flag}")
    check((flag_value(wargs, "join") or "").endswith(":50051"), "pool: the workers do not join the API port")
    mounts = secret_mounts(wpod, w)
    for flag in ("join_ca", "join_token_file"):
        path = flag_value(wargs, flag)
        check(path is not None and os.path.dirname(path) in mounts,
              f"pool: the worker's --{flag} is not in a mounted Secret")
    # A worker verifies the coordinator but holds none of its secrets.
    for v in wpod.get("volumes", []):
        if v.get("secret", {}).get("secretName") == "ftd-tls":
            keys = [i.get("key") for i in v["secret"].get("items", [])]
            check(keys == ["ca.crt"], f"pool: the workers mount ftd-tls's {keys or 'every key'}, not its CA alone")
    check(flag_value(wargs, "worker_name") == "$(POD_NAME)" and env_from_field(w, "POD_NAME", "metadata.name"),
          "pool: a worker is not named by its pod")
    check(flag_value(wargs, "collective_host") == "$(POD_IP)" and env_from_field(w, "POD_IP", "status.podIP"),
          "pool: a worker's collectives do not listen on its pod's address")
    check(str(w.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")) == "1"
          and wpod.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true",
          "pool: the workers do not ask for a GPU node and device")
    sc = w.get("securityContext", {})
    check(wpod.get("securityContext", {}).get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
          and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"],
          "pool: the workers' security context is not restrictive")
    check("data" in [t["metadata"]["name"] for t in wspec.get("volumeClaimTemplates", [])],
          "pool: the workers have no data volume (their input and activation caches)")

    policies = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "ftd-pool"]
    check(len(policies) == 1, "pool: no ftd-pool NetworkPolicy")
    if policies:
        pspec = policies[0]["spec"]
        selector = pspec.get("podSelector", {}).get("matchLabels", {})
        check(selector, "pool: the pool's policy selects every pod")
        for template in (coordinator, wspec["template"]):
            labels = template.get("metadata", {}).get("labels", {})
            check(all(labels.get(k) == v for k, v in selector.items()),
                  "pool: the pool's policy does not select the coordinator and the workers")
        check("Ingress" in pspec.get("policyTypes", []), "pool: the pool's policy does not govern ingress")
        for rule in pspec.get("ingress", []):
            sources = rule.get("from", [])
            check(sources and all(set(f) == {"podSelector"} and f["podSelector"].get("matchLabels") == selector
                                  for f in sources),
                  f"pool: the pool's policy admits traffic from outside the pool: {sources}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*argv):
    subprocess.run(["openssl", *argv], check=True, capture_output=True)


def check_image_default(dockerfile, cmd, ftd, work):
    """The image's default command refuses plaintext on 0.0.0.0 (a bare `docker run` does not
    serve anyone who reaches the port), and takes TLS from the environment. Neither run binds."""
    os.makedirs(work, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="ftd-image-", dir=work)
    # Any free port, should it serve after all; then it is stopped at once.
    replace = {"--data_dir": f"--data_dir={tmp}/data", "--data_roots": f"--data_roots={tmp}",
               "--address": "--address=0.0.0.0:0", "--metrics_address": "--metrics_address=127.0.0.1:0"}
    args = [replace.get(a.partition("=")[0], a) for a in cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGS_")}

    def run(extra_env):
        try:
            return subprocess.run([ftd, *args], capture_output=True, text=True, timeout=20,
                                  env={**env, **extra_env})
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 0, "", "it started serving")

    bare = run({})
    check(bare.returncode != 0 and "--allow_insecure" in bare.stderr,
          f"{dockerfile}: the default command should refuse plaintext on 0.0.0.0: {bare.stderr}")
    missing = os.path.join(tmp, "no-such.crt")
    tls = run({"FLAGS_tls_cert": missing, "FLAGS_tls_key": missing})
    check(tls.returncode != 0 and missing in tls.stderr,
          f"{dockerfile}: FLAGS_tls_cert in the environment is not read: {tls.stderr}")


def run_overlay(name, objects, ftd, ftctl, work, workers=None):
    """The overlay's ftd arguments and probe for real, with its Secrets' files; with `workers`
    (the pool's worker StatefulSet), a worker with its arguments attaches to it."""
    sts = one(objects, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sm = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    tmp = tempfile.mkdtemp(prefix=f"ftd-deploy-{name}-", dir=work)
    # The Secrets' files where the pod mounts them, under tmp.
    moved = lambda path: tmp + path
    for mount in secret_mounts(pod, c):
        os.makedirs(moved(mount))
    args, probe = c["args"], c["startupProbe"]["exec"]["command"]
    server_name = sm["tlsConfig"]["serverName"]
    cert, key = moved(flag_value(args, "tls_cert")), moved(flag_value(args, "tls_key"))
    ca = moved(flag_value(probe, "tls_ca"))
    ca_key = os.path.join(tmp, "ca.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", ca_key, "-out", ca, "-days", "30", "-subj", "/CN=ftd-test-ca")
    ext = os.path.join(tmp, "ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{server_name}\nextendedKeyUsage=serverAuth\n")
    csr = os.path.join(tmp, "csr")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={server_name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
            "-days", "30", "-extfile", ext)
    token = "user-token-" + name
    admin_token = "worker-token-" + name
    with open(moved(flag_value(args, "tokens_file")), "w") as f:
        f.write(f"{hashlib.sha256(token.encode()).hexdigest()} team-a user\n")
        f.write(f"{hashlib.sha256(admin_token.encode()).hexdigest()} pool admin\n")
    scrape_token = "scrape-token-" + name
    with open(moved(flag_value(args, "metrics_token_file")), "w") as f:
        f.write(scrape_token + "\n")
    grpc_port = free_port()
    address_file = os.path.join(tmp, "address")
    replaced = []
    for a in args:
        a = a.replace("--address=0.0.0.0:50051", f"--address=127.0.0.1:{grpc_port}")
        a = a.replace("--metrics_address=0.0.0.0:9464", "--metrics_address=127.0.0.1:0")
        a = a.replace("--rendezvous_address=0.0.0.0:29400", "--rendezvous_address=127.0.0.1:0")
        a = a.replace("$(POD_IP)", "127.0.0.1")
        flag, _, value = a.partition("=")
        if value.startswith("/"):
            os.makedirs(os.path.dirname(moved(value)), exist_ok=True)
            if flag in ("--data_dir", "--data_roots"):
                os.makedirs(moved(value), exist_ok=True)
            a = f"{flag}={moved(value)}"
        replaced.append(a)
    log_path = os.path.join(tmp, "ftd.log")
    with open(log_path, "w") as log:
        daemon = subprocess.Popen([ftd, *replaced, f"--address_file={address_file}"], stdout=log, stderr=log)
    try:
        deadline = time.time() + 60
        while not os.path.exists(address_file) and daemon.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        if not os.path.exists(address_file):
            check(False, f"{name}: ftd did not start with the overlay's arguments:\n{open(log_path).read()}")
            return
        command = [ftctl if probe[0] == "ftctl" else probe[0]]
        for a in probe[1:]:
            flag, _, value = a.partition("=")
            if flag == "--address":
                a = f"--address=127.0.0.1:{grpc_port}"
            elif value.startswith("/"):
                a = f"{flag}={moved(value)}"
            command.append(a)
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        check(result.returncode == 0, f"{name}: the probe failed ({result.returncode}): {result.stderr}")
        # The metrics, as the ServiceMonitor scrapes them.
        info = subprocess.run([ftctl, f"--address=127.0.0.1:{grpc_port}", f"--tls_ca={ca}",
                               f"--tls_server_name={server_name}", "--json", "info"],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "FTD_TOKEN": token})
        check(info.returncode == 0, f"{name}: ftctl info with a user's token failed: {info.stderr}")
        with open(log_path) as f:
            started = f.read()
        found = re.search(r"metrics https://([0-9.]+):([0-9]+)/metrics", started)
        check(found is not None, f"{name}: the metrics endpoint is not on HTTPS:\n{started}")
        if not found:
            return
        context = ssl.create_default_context(cafile=ca)
        def scrape(headers):
            # Verified against the CA and the ServiceMonitor's server name.
            with socket.create_connection((found.group(1), int(found.group(2))), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname=server_name) as tls:
                    request = f"GET {sm.get('path', '/metrics')} HTTP/1.1\r\nHost: {server_name}\r\n"
                    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
                    tls.sendall(request.encode())
                    answer = b""
                    while chunk := tls.recv(65536):
                        answer += chunk
            head, _, body = answer.decode().partition("\r\n\r\n")
            return int(head.split(" ")[1]), body
        status, body = scrape({"Authorization": f"Bearer {scrape_token}"})
        check(status == 200 and "ftd_build_info" in body, f"{name}: the ServiceMonitor's scrape got {status}")
        status, body = scrape({})
        check(status == 401 and "ftd_build_info" not in body, f"{name}: a scrape without the token got {status}")
        print(f"{name}: ftd started with the overlay's arguments; probe ok; HTTPS scrape 200 with the token, 401 without")
        if workers is not None:
            run_worker(name, workers, ftd, ftctl, tmp, grpc_port, ca, server_name, admin_token, token)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


def run_worker(name, workers, ftd, ftctl, tmp, grpc_port, ca, server_name, admin_token, user_token):
    """A worker with its StatefulSet's arguments (one CPU device in place of its GPU, loopback
    addresses) attaches to the coordinator over TLS with an admin's token; with a user's token it
    is refused and exits."""
    pod = workers["spec"]["template"]["spec"]
    w = pod["containers"][0]

    def start(label, token):
        # Each worker's files under a folder of its own.
        moved = lambda path: f"{tmp}/worker-{label}{path}"
        os.makedirs(moved(os.path.dirname(flag_value(w["args"], "join_token_file"))), exist_ok=True)
        with open(moved(flag_value(w["args"], "join_token_file")), "w") as f:
            f.write(token + "\n")
        argv = [ftd]
        for a in w["args"]:
            flag, _, value = a.partition("=")
            if flag == "--join":
                a = f"--join=127.0.0.1:{grpc_port}"
            elif flag == "--join_ca":
                a = f"--join_ca={ca}"
            elif flag == "--cpu_devices":
                a = "--cpu_devices=1"
            elif flag == "--data_dir":
                a = f"--data_dir={moved(value)}"
            elif value.startswith("/"):
                a = f"{flag}={moved(value)}"
            a = a.replace("$(POD_NAME)", f"ftd-worker-{label}").replace("$(POD_IP)", "127.0.0.1")
            argv.append(a)
        log = open(os.path.join(tmp, f"worker-{label}.log"), "w")
        return subprocess.Popen(argv + ["--metrics_address="], stdout=log, stderr=log), log.name

    worker, log = start("0", admin_token)
    refused, refused_log = start("1", user_token)
    try:
        listed = False
        deadline = time.time() + 60
        while not listed and time.time() < deadline and worker.poll() is None:
            info = subprocess.run([ftctl, f"--address=127.0.0.1:{grpc_port}", f"--tls_ca={ca}",
                                   f"--tls_server_name={server_name}", "info"], capture_output=True,
                                  text=True, timeout=30, env={**os.environ, "FTD_TOKEN": admin_token})
            listed = "ftd-worker-0/cpu:0" in info.stdout
            time.sleep(0.2)
        check(listed, f"{name}: the worker did not attach over TLS:\n{open(log).read()}")
        try:
            code = refused.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        text = open(refused_log).read()
        check(code not in (None, 0) and "PERMISSION_DENIED" in text,
              f"{name}: a worker with a user's token was not refused ({code}):\n{text}")
        print(f"{name}: a worker attached over TLS with an admin's token; one with a user's was refused")
    finally:
        for p in (worker, refused):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=60)


def validate(work, objects):
    path = os.path.join(work, "objects.json")
    with open(path, "w") as f:
        json.dump(objects, f)
    return subprocess.run(["node", os.path.join(work, "validate.mjs"), path], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftd", required=True)
    ap.add_argument("--ftctl", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    args = ap.parse_args()
    for tool in ("kubectl", "node", "npm", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"FAIL: {tool} is not installed: run scripts/install-deps.sh")

    helpfull = subprocess.run([args.ftd, "--helpfull"], capture_output=True, text=True).stdout
    known_flags = set(re.findall(r"^\s+--([a-z_]+) ", helpfull, re.M))
    check("metrics_address" in known_flags, "ftd --helpfull lists no --metrics_address: cannot read flags")
    ftctl_help = subprocess.run([args.ftctl, "--help"], capture_output=True, text=True).stdout
    ftctl_flags = set(re.findall(r"^\s+--([a-z_]+) ", ftctl_help, re.M))
    check("tls_ca" in ftctl_flags, "ftctl --help lists no --tls_ca: cannot read its flags")
    with open(os.path.join(args.source_dir, "deploy/grafana/ftd-dashboard.json")) as f:
        dashboard = json.load(f)

    rendered = {name: render(args.source_dir, name) for name in ("cpu", "gpu", "pool")}
    for name, objects in rendered.items():
        check_overlay(name, coordinator_objects(objects), dashboard, known_flags, ftctl_flags)
    check_pool(rendered["pool"], known_flags)

    # The Dockerfiles: ftd's flags, and the install script's options.
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):
        with open(os.path.join(args.source_dir, "deploy/docker", dockerfile)) as f:
            text = f.read()
        cmd = re.search(r"^CMD (\[.*?\])\s*$", text.replace("\\\n", ""), re.M)
        check(cmd is not None, f"{dockerfile}: no CMD")
        if cmd:
            for flag in flags_of(json.loads(cmd.group(1))):
                check(flag in known_flags, f"{dockerfile}: ftd has no flag --{flag}")
            check_image_default(dockerfile, json.loads(cmd.group(1)), args.ftd, args.work_dir)
        for options in re.findall(r"\./scripts/install-deps\.sh([^&\n\\]*)", text):
            result = subprocess.run(["bash", os.path.join(args.source_dir, "scripts/install-deps.sh"),
                                     *options.split(), "--dry-run"], capture_output=True, text=True)
            check(result.returncode == 0, f"{dockerfile}: install-deps.sh{options}: {result.stderr.strip()}")

    work = args.work_dir
    os.makedirs(work, exist_ok=True)
    for name, objects in rendered.items():
        workers = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "ftd-worker"]
        run_overlay(name, coordinator_objects(objects), args.ftd, args.ftctl, work,
                    workers[0] if workers else None)

    # The schemas, through the npm packages pinned in tests/deploy.
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
