#!/usr/bin/env python3
"""Offline checks of Tessera's rendered Kubernetes manifests (called by scripts/test-k8s).

Every rendered overlay is a file `<overlay>.yaml` in one directory (`kubectl kustomize
deploy/k8s/overlays/<overlay>`): the four banks (card, auto, savings, home) and `coordinator`.

Subcommands:
  policy DIR                 every security and deployment rule, on every pod spec, Service,
                             NetworkPolicy, PodDisruptionBudget, autoscaler and training Job;
                             prints each assertion; exit 1 if any fails.
  self-test DIR              feeds the policy deliberately broken copies of DIR's objects and
                             requires each to be rejected by the rule it breaks.
  monitors DIR               shape of the optional ServiceMonitor / PodMonitor (their CRDs have
                             no schema offline): DIR/<overlay>.yaml rendered with the component.
  prometheusrule FILE RULES CORE
                             the optional PrometheusRule: FILE is overlays/coordinator rendered
                             with components/prometheusrule, RULES the Prometheus rules file
                             (deploy/prometheus/rules/tessera.yml), CORE overlays/coordinator
                             rendered without it. One monitoring.coreos.com/v1 PrometheusRule in
                             the coordinator's namespace whose spec.groups equal RULES' groups
                             (as data), nothing else added; then proves a changed copy fails.
  split-crds FILE OUT        writes FILE's objects except monitoring.coreos.com ones to OUT.
  add-to-kustomization FILE (component PATH | patch PATH | image NAME NEWNAME NEWTAG)
                             edits a (copied) kustomization.yaml, as docs/KUBERNETES.md tells
                             a bank or operator to.
  images FILE EXPECTED       every container image in FILE is EXPECTED.
  examples EXDIR DIR         deploy/k8s/examples (data volume, loader pod, cert-manager
                             Certificates) agree with the rendered overlays in DIR.
  config-check DIR BINDIR    runs every rendered party/coordinator container's configuration
                             through `BINDIR/<binary> check-config` with that container's
                             environment (files it names inside a mounted Secret, such as the
                             API keys file, replaced by stand-ins); exit 1 unless each passes
                             and each broken variant fails.

Needs PyYAML (scripts/test-k8s installs it in a virtualenv).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

BANKS = ["card", "auto", "savings", "home"]
OVERLAYS = BANKS + ["coordinator"]
NAMESPACE = {**{b: f"tessera-{b}" for b in BANKS}, "coordinator": "tessera-federation"}
UID = 65532
QUIC_PORT = 4433
HTTP_PORT = 8080
METRICS_PORT = 9100
# The coordinator's /metrics listener (listen_metrics), apart from the API's port.
COORD_METRICS_PORT = 9090
# The coordinator's API keys file: a variable naming a file of a Secret mounted whole.
KEYS_ENV = "TESSERA_COORDINATOR__AUTH__KEYS_FILE"
AUTH_MODE_ENV = "TESSERA_COORDINATOR__AUTH__MODE"
METRICS_ENV = "TESSERA_COORDINATOR__LISTEN_METRICS"
KEYS_SECRET = "tessera-api-keys"
MONITORING_NS = "monitoring"
PARTY_LABEL = {"app.kubernetes.io/name": "tessera-party"}
COORD_NAME = "tessera-coordinator"
KNOWN_KINDS = {
    "ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Deployment", "NetworkPolicy",
    "Service", "CronJob", "Job", "PodDisruptionBudget", "HorizontalPodAutoscaler",
}
WORKLOAD_KINDS = {"Deployment", "Job", "CronJob", "StatefulSet", "DaemonSet", "Pod", "ReplicaSet"}
# Secrets a check-config run may need, with a plausible stand-in value.
SECRET_PLACEHOLDERS = {
    ("coordinator-audit", "url"): "postgres://user:pass@db:5432/tessera",
}
# Files of mounted Secrets a check-config run reads, with a plausible stand-in content: an API
# keys file with one client (a hash of nothing anyone holds).
SECRET_FILE_PLACEHOLDERS = {
    (KEYS_SECRET, "api-keys.toml"): (
        '[[client]]\nname = "config-check"\n'
        'key_sha256 = "' + "0" * 63 + '1"\nscopes = ["score"]\n'
    ),
}


# ---------------------------------------------------------------------------- loading

def load_file(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def load_dir(d: Path) -> dict[str, list[dict]]:
    out = {}
    for o in OVERLAYS:
        p = d / f"{o}.yaml"
        if not p.exists():
            raise SystemExit(f"k8s_policy: {p} is missing (render every overlay first)")
        out[o] = load_file(p)
    return out


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_template(obj: dict) -> dict | None:
    """The pod template (metadata + spec) of a workload, or None."""
    k = obj.get("kind")
    spec = obj.get("spec", {}) or {}
    if k == "Pod":
        return {"metadata": obj.get("metadata", {}), "spec": spec}
    if k == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    if k in WORKLOAD_KINDS:
        return spec.get("template")
    return None


def labels_of_template(t: dict) -> dict:
    return (t.get("metadata") or {}).get("labels") or {}


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a Service selector (plain map) or a LabelSelector matches `labels`."""
    if selector is None:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        for k, v in (selector.get("matchLabels") or {}).items():
            if labels.get(k) != v:
                return False
        for e in selector.get("matchExpressions") or []:
            op, key, vals = e.get("operator"), e.get("key"), e.get("values") or []
            if op == "In" and labels.get(key) not in vals:
                return False
            if op == "NotIn" and labels.get(key) in vals:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
        return True
    # A Service's plain selector: every pair must match; an empty one selects nothing here.
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def ns_selector_admits(sel: dict | None, namespace: str) -> bool:
    return selects(sel, {"kubernetes.io/metadata.name": namespace})


def quantity(q) -> float:
    """A Kubernetes quantity as a float (cpu in cores, memory in bytes)."""
    s = str(q)
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", s)
    if not m or (m.group(2) and m.group(2) not in units):
        raise ValueError(f"not a quantity: {s!r}")
    return float(m.group(1)) * units.get(m.group(2), 1)


def container_port(containers: list[dict], port) -> int | None:
    """Resolves a probe/Service port (number or name) against the containers' ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for c in containers:
        for p in c.get("ports") or []:
            if p.get("name") == port:
                return p.get("containerPort")
    return None


def env_map(container: dict, objects: list[dict], namespace: str) -> tuple[dict, list[str]]:
    """The container's environment as the kubelet would set it; secret values are stand-ins.

    Returns (env, problems): a problem is a reference that cannot be resolved offline."""
    env: dict[str, str] = {}
    problems: list[str] = []
    cms = {o["metadata"]["name"]: o for o in objects
           if o.get("kind") == "ConfigMap" and o["metadata"].get("namespace") == namespace}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            name = src["configMapRef"].get("name")
            cm = cms.get(name)
            if cm is None:
                problems.append(f"envFrom ConfigMap {name} is not among the rendered objects")
                continue
            for k, v in (cm.get("data") or {}).items():
                env[prefix + k] = str(v)
        else:
            problems.append(f"envFrom {sorted(src)} cannot be resolved offline")
    for e in container.get("env") or []:
        n = e.get("name")
        if "value" in e:
            env[n] = str(e["value"])
        elif "valueFrom" in e:
            vf = e["valueFrom"]
            if "secretKeyRef" in vf:
                ref = (vf["secretKeyRef"].get("name"), vf["secretKeyRef"].get("key"))
                if ref in SECRET_PLACEHOLDERS:
                    env[n] = SECRET_PLACEHOLDERS[ref]
                else:
                    problems.append(f"env {n}: no stand-in for Secret {ref[0]} key {ref[1]} "
                                    "(add one to SECRET_PLACEHOLDERS in scripts/k8s_policy.py)")
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                cm = cms.get(ref.get("name"))
                if cm is None or ref.get("key") not in (cm.get("data") or {}):
                    problems.append(f"env {n}: ConfigMap {ref.get('name')} key {ref.get('key')} not rendered")
                else:
                    env[n] = str(cm["data"][ref["key"]])
            else:
                problems.append(f"env {n}: valueFrom {sorted(vf)} cannot be resolved offline")
        else:
            env[n] = ""
    return env, problems


# ---------------------------------------------------------------------------- the checker

class Checker:
    def __init__(self, verbose: bool = True):
        self.verbose = verbose
        self.passed = 0
        self.failures: list[tuple[str, str, str]] = []

    def check(self, cond: bool, rule: str, where: str, what: str) -> bool:
        if cond:
            self.passed += 1
            if self.verbose:
                print(f"  ok   [{rule}] {where}: {what}")
        else:
            self.failures.append((rule, where, what))
            if self.verbose:
                print(f"  FAIL [{rule}] {where}: {what}")
        return bool(cond)


def check_pod(ck: Checker, overlay: str, obj: dict, objects: list[dict], tessera: bool = True) -> None:
    """Every pod rule on one workload. `tessera=False` (an example helper pod): the security
    rules only, not Tessera's own conventions (metrics annotations, /tmp, its ServiceAccount)."""
    where = f"{overlay}/{name_of(obj)}"
    t = pod_template(obj)
    if not ck.check(t is not None, "pod.template", where, "has a pod template"):
        return
    spec = t.get("spec") or {}
    psc = spec.get("securityContext") or {}
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    ck.check(spec.get("automountServiceAccountToken") is False, "pod.automount-token-off", where,
             "automountServiceAccountToken is false")
    for h in ("hostNetwork", "hostPID", "hostIPC"):
        ck.check(not spec.get(h), "pod.no-host-namespaces", where, f"{h} is not set")
    ck.check(all("hostPath" not in v for v in volumes.values()), "pod.no-hostpath", where,
             "no hostPath volume")
    sa = spec.get("serviceAccountName")
    sa_obj = next((o for o in objects if o.get("kind") == "ServiceAccount"
                   and o["metadata"].get("name") == sa), None)
    if tessera:
        ck.check(sa_obj is not None and sa_obj.get("automountServiceAccountToken") is False,
                 "pod.automount-token-off", where,
                 f"its ServiceAccount {sa} is rendered with automountServiceAccountToken false")
    ann = (t.get("metadata") or {}).get("annotations") or {}
    ports = {p.get("containerPort") for c in containers for p in c.get("ports") or []}
    if tessera:
        ck.check(ann.get("prometheus.io/scrape") == "true"
                 and str(ann.get("prometheus.io/port", "")).isdigit()
                 and int(ann.get("prometheus.io/port")) in ports
                 and ann.get("prometheus.io/path") == "/metrics",
                 "pod.prometheus-annotations", where,
                 "prometheus.io/scrape=true, prometheus.io/port a container port, prometheus.io/path=/metrics")
    ck.check(bool(spec.get("containers")), "pod.containers", where, "has containers")
    for c in containers:
        cw = f"{where} container {c.get('name')}"
        csc = c.get("securityContext") or {}
        eff = lambda k: csc.get(k, psc.get(k))  # noqa: E731 (container setting wins)
        ck.check(eff("runAsNonRoot") is True, "pod.run-as-non-root", cw, "runAsNonRoot is true")
        ck.check(eff("runAsUser") == UID, "pod.run-as-user", cw, f"runAsUser is {UID}")
        ck.check((eff("seccompProfile") or {}).get("type") == "RuntimeDefault",
                 "pod.seccomp-runtime-default", cw, "seccompProfile is RuntimeDefault")
        ck.check(csc.get("readOnlyRootFilesystem") is True, "container.read-only-root-fs", cw,
                 "readOnlyRootFilesystem is true")
        ck.check(csc.get("allowPrivilegeEscalation") is False, "container.no-privilege-escalation",
                 cw, "allowPrivilegeEscalation is false")
        caps = csc.get("capabilities") or {}
        ck.check("ALL" in (caps.get("drop") or []) and not caps.get("add"),
                 "container.drop-all-caps", cw, "capabilities drop ALL and add none")
        ck.check(csc.get("privileged") is not True, "container.not-privileged", cw,
                 "not privileged")
        ck.check(all("hostPort" not in p for p in c.get("ports") or []), "container.no-host-port",
                 cw, "no hostPort")
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        have = all(k in req and k in lim for k in ("cpu", "memory"))
        ok = have
        if have:
            try:
                ok = all(quantity(req[k]) <= quantity(lim[k]) for k in ("cpu", "memory"))
            except ValueError:
                ok = False
        ck.check(ok, "container.resources", cw,
                 "requests and limits for cpu and memory, requests <= limits")
        image = str(c.get("image", ""))
        last = image.rsplit("/", 1)[-1]
        pinned = "@sha256:" in image or (":" in last and not last.endswith(":latest"))
        ck.check(pinned, "container.image-pinned", cw, f"image {image!r} has a tag other than latest (or a digest)")
        mounts = c.get("volumeMounts") or []
        tmp = [m for m in mounts if m.get("mountPath") == "/tmp"]
        if tessera:
            ck.check(len(tmp) == 1 and "emptyDir" in volumes.get(tmp[0].get("name"), {}),
                     "pod.tmp-emptydir", cw, "/tmp is an emptyDir")
        for m in mounts:
            v = volumes.get(m.get("name"), {})
            secret = "secret" in v or any("secret" in s for s in (v.get("projected") or {}).get("sources") or [])
            if secret:
                ck.check(m.get("readOnly") is True and "subPath" not in m,
                         "container.secret-mounts-read-only", cw,
                         f"Secret volume {m.get('name')} at {m.get('mountPath')} is read-only, whole (no subPath)")
        ck.check(all("value" not in e or not re.search(r"://[^/@\s]+:[^/@\s]+@", str(e["value"]))
                     for e in c.get("env") or []),
                 "container.no-literal-secrets", cw, "no credentials in literal env values")


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o.get("kind") in WORKLOAD_KINDS]


def check_overlay_common(ck: Checker, overlay: str, objects: list[dict]) -> None:
    ns = NAMESPACE[overlay]
    for o in objects:
        w = f"{overlay}/{name_of(o)}"
        ck.check(o.get("kind") in KNOWN_KINDS, "render.known-kinds", w,
                 "a reviewed kind (no RBAC, no unexpected objects)")
        ck.check((o.get("metadata") or {}).get("namespace") == ns, "render.namespace", w,
                 f"namespace is {ns}")
    for o in workloads(objects):
        check_pod(ck, overlay, o, objects)
    for o in objects:
        if o.get("kind") == "ConfigMap":
            ck.check(not any(re.search(r"://[^/@\s]+:[^/@\s]+@", str(v)) or k.endswith("AUDIT__URL")
                             for k, v in (o.get("data") or {}).items()),
                     "container.no-literal-secrets", f"{overlay}/{name_of(o)}",
                     "no database URL or credentials in a ConfigMap")


def netpols_for(objects: list[dict], labels: dict) -> list[dict]:
    return [o for o in objects if o.get("kind") == "NetworkPolicy"
            and selects((o.get("spec") or {}).get("podSelector") or {}, labels)]


def port_set(rule: dict) -> set[tuple[str, object]]:
    return {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports") or []}


def party_env(bank: str, objects: list[dict]) -> dict:
    """The environment of a bank overlay's party container (empty if there is none)."""
    for d in workloads(objects):
        env, _ = env_map((pod_template(d)["spec"].get("containers") or [{}])[0], objects, NAMESPACE[bank])
        return env
    return {}


def check_party(ck: Checker, bank: str, objects: list[dict]) -> None:
    deps = [o for o in objects if o.get("kind") == "Deployment"
            and selects({"matchLabels": PARTY_LABEL}, labels_of_template(pod_template(o) or {}))]
    ck.check(len(deps) == 1 and len(workloads(objects)) == 1, "party.deployment-single", bank,
             "exactly one workload: the party Deployment")
    if not deps:
        return
    dep = deps[0]
    w = f"{bank}/{name_of(dep)}"
    spec = dep.get("spec") or {}
    ck.check(spec.get("replicas") == 1, "party.deployment-single", w, "replicas is 1")
    ck.check((spec.get("strategy") or {}).get("type") == "Recreate", "party.deployment-single", w,
             "strategy is Recreate (never two pods of one bank identity)")
    t = pod_template(dep)
    labels = labels_of_template(t)
    pspec = t.get("spec") or {}
    c = (pspec.get("containers") or [{}])[0]
    env, problems = env_map(c, objects, NAMESPACE[bank])
    ck.check(not problems, "party.env", w, "environment resolves offline" + (f": {problems}" if problems else ""))
    ck.check(env.get("TESSERA_PARTY__PARTY_ID") == bank, "party.overlay", w, f"party id is {bank}")
    ck.check(env.get("TESSERA_PARTY__DATA__PATH") == f"/data/{bank}.csv", "party.overlay", w,
             f"data path is /data/{bank}.csv")
    ck.check(("TESSERA_PARTY__DATA__LABEL_COLUMN" in env) == (bank == "card"), "party.overlay", w,
             "only the lender (card) has a label column")
    ck.check(env.get("TESSERA_PARTY__COORDINATOR_DISCOVERY") == "every", "party.discovery", w,
             "coordinator discovery is `every` (one connection per coordinator replica)")
    addr = env.get("TESSERA_PARTY__COORDINATOR_ADDR", "")
    ck.check(addr.endswith(f":{QUIC_PORT}"), "party.discovery", w,
             f"coordinator address {addr!r} is on port {QUIC_PORT}")
    metrics = env.get("TESSERA_PARTY__METRICS_ADDR", "")
    ck.check(metrics == f"0.0.0.0:{METRICS_PORT}", "party.metrics-port", w,
             f"metrics listener on 0.0.0.0:{METRICS_PORT}")
    cports = [(p.get("protocol", "TCP"), p.get("containerPort")) for p in c.get("ports") or []]
    ck.check(cports == [("TCP", METRICS_PORT)], "party.metrics-port", w,
             f"the only container port is TCP {METRICS_PORT} (metrics)")
    probe = (c.get("livenessProbe") or {}).get("httpGet") or {}
    ck.check(probe.get("path") == "/healthz"
             and container_port(pspec.get("containers") or [], probe.get("port")) == METRICS_PORT,
             "party.probes", w, f"liveness probe GET /healthz on {METRICS_PORT}")
    vols = {v.get("name"): v for v in pspec.get("volumes") or []}
    tls = vols.get("tls", {}).get("secret", {})
    ck.check(tls.get("secretName") == f"{bank}-tls", "party.overlay", w,
             f"certificate Secret is {bank}-tls")
    data = vols.get("data", {}).get("persistentVolumeClaim", {})
    ck.check(data.get("claimName") == f"{bank}-data" and data.get("readOnly") is True,
             "party.overlay", w, f"data volume is the PVC {bank}-data, read-only")
    dm = [m for m in c.get("volumeMounts") or [] if m.get("name") == "data"]
    ck.check(len(dm) == 1 and dm[0].get("readOnly") is True, "party.data-read-only", w,
             "data mounted read-only")
    # No Service: nothing dials a party.
    svcs = [o for o in objects if o.get("kind") == "Service"]
    ck.check(not svcs, "party.no-service", bank, "no Service in the bank's install")
    for s in objects:
        if s.get("kind") == "Service":
            ck.check(not selects((s.get("spec") or {}).get("selector"), labels), "party.no-service",
                     f"{bank}/{name_of(s)}", "does not select the party")
    # NetworkPolicy: every policy that selects the party pods (they add up) is checked.
    nps = netpols_for(objects, labels)
    ck.check(bool(nps), "party.netpol", bank, "a NetworkPolicy selects the party pods")
    types = {t for n in nps for t in (n.get("spec") or {}).get("policyTypes") or []}
    ck.check({"Ingress", "Egress"} <= types, "party.netpol", bank,
             "party pods are isolated for ingress and egress (policyTypes Ingress, Egress)")
    for n in nps:
        nw = f"{bank}/{name_of(n)}"
        for i, r in enumerate((n.get("spec") or {}).get("ingress") or []):
            peers = r.get("from") or []
            ok_peers = bool(peers) and all(
                set(p) <= {"namespaceSelector", "podSelector"} and "namespaceSelector" in p
                and p["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NS}}
                for p in peers)
            ck.check(ok_peers, "party.netpol-ingress", nw,
                     f"ingress rule {i} admits only the namespace {MONITORING_NS}")
            ck.check(port_set(r) == {("TCP", METRICS_PORT)}, "party.netpol-ingress", nw,
                     f"ingress rule {i} admits only TCP {METRICS_PORT}")
        for i, r in enumerate((n.get("spec") or {}).get("egress") or []):
            ps = port_set(r)
            ok = bool(ps) and (ps == {("UDP", QUIC_PORT)} or ps <= {("UDP", 53), ("TCP", 53)})
            ok = ok and all("endPort" not in p for p in r.get("ports") or [])
            ck.check(ok, "party.netpol-egress", nw,
                     f"egress rule {i} allows only UDP {QUIC_PORT} (coordinator) or DNS (UDP/TCP 53): {sorted(ps, key=str)}")
    egress_ports = {p for n in nps for r in (n.get("spec") or {}).get("egress") or [] for p in port_set(r)}
    ck.check(("UDP", QUIC_PORT) in egress_ports and ("UDP", 53) in egress_ports,
             "party.netpol-egress", bank, f"egress to UDP {QUIC_PORT} and DNS is allowed")


def port_of_addr(addr: str | None) -> int | None:
    """The port of `host:port` (None if there is none)."""
    m = re.fullmatch(r".*:([0-9]+)", str(addr or "").strip().strip('"'))
    return int(m.group(1)) if m else None


def coord_metrics_port(env: dict) -> int | None:
    """Where the coordinator serves /metrics: listen_metrics if set, else the API's port."""
    if METRICS_ENV in env:
        return port_of_addr(env[METRICS_ENV])
    return port_of_addr(env.get("TESSERA_COORDINATOR__LISTEN_HTTP", f"127.0.0.1:{HTTP_PORT}"))


def secret_mount_of(path: str, container: dict, pod_spec: dict) -> tuple[dict | None, dict | None, str]:
    """The volumeMount under which `path` lies, its volume, and the path inside the volume."""
    volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
    for m in container.get("volumeMounts") or []:
        mp = str(m.get("mountPath", "")).rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            return m, volumes.get(m.get("name")), path[len(mp) + 1:]
    return None, None, ""


def check_api_keys(ck: Checker, where: str, container: dict, pod_spec: dict, env: dict) -> None:
    """API authentication is on, and its keys file comes from the Secret, mounted read-only and
    whole (a subPath mount would never see the Secret change: no rotation without restart)."""
    mode = str(env.get(AUTH_MODE_ENV, "keys")).strip().strip('"')
    ck.check(mode == "keys", "coord.api-keys", where, f"API authentication is on (auth.mode {mode!r}; 'none' would turn it off)")
    path = env.get(KEYS_ENV, "")
    ck.check(path.startswith("/"), "coord.api-keys", where, f"{KEYS_ENV} names an absolute path ({path!r})")
    m, v, rel = secret_mount_of(path, container, pod_spec) if path.startswith("/") else (None, None, "")
    secret = (v or {}).get("secret") or {}
    ck.check(m is not None and secret.get("secretName") == KEYS_SECRET, "coord.api-keys", where,
             f"the keys file {path} lies in a mount of the Secret {KEYS_SECRET}")
    if m is None:
        return
    ck.check(m.get("readOnly") is True and "subPath" not in m and "subPathExpr" not in m,
             "coord.api-keys", where,
             f"the Secret {KEYS_SECRET} is mounted read-only and whole at {m.get('mountPath')} (no subPath: "
             "updates reach the pod)")
    items = {i.get("path"): i.get("key") for i in secret.get("items") or []}
    key = items.get(rel, rel if not items else None)
    ck.check(bool(key) and "/" not in rel and key == "api-keys.toml", "coord.api-keys", where,
             f"the file {rel!r} is the Secret's key api-keys.toml")


def check_coord_metrics(ck: Checker, where: str, template: dict, env: dict) -> int | None:
    """The scrape annotations and a container port point at where /metrics is served."""
    mport = coord_metrics_port(env)
    ann = (template.get("metadata") or {}).get("annotations") or {}
    ck.check(mport is not None and str(ann.get("prometheus.io/port")) == str(mport), "coord.metrics-port", where,
             f"prometheus.io/port is the port /metrics is served on ({mport}: listen_metrics, else listen_http)")
    ports = [p for c in (template.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
    named = [p for p in ports if p.get("containerPort") == mport and p.get("protocol", "TCP") == "TCP"]
    ok = len(named) == 1 and (mport == HTTP_PORT or named[0].get("name") == "metrics")
    ck.check(ok, "coord.metrics-port", where, f"a TCP container port {mport} (named `metrics` when apart from the API)")
    return mport


def check_coordinator(ck: Checker, objects: list[dict], banks: dict[str, list[dict]]) -> None:
    ov = "coordinator"
    ns = NAMESPACE[ov]
    by_kind = lambda k: [o for o in objects if o.get("kind") == k]  # noqa: E731
    servers = [o for o in by_kind("Deployment")
               if labels_of_template(pod_template(o)).get("app.kubernetes.io/name") == COORD_NAME]
    ck.check(len(servers) == 1, "coord.deployment", ov, "one coordinator Deployment")
    trainers = [o for o in objects if o.get("kind") in ("Job", "CronJob")
                and labels_of_template(pod_template(o) or {}).get("app.kubernetes.io/name") == COORD_NAME]
    ck.check(len(trainers) >= 1, "coord.training-job", ov, "a training Job (or Job template) exists")
    if not servers:
        return
    dep = servers[0]
    w = f"{ov}/{name_of(dep)}"
    t = pod_template(dep)
    slabels = labels_of_template(t)
    spec = t.get("spec") or {}
    cs = spec.get("containers") or []
    c = cs[0] if cs else {}
    ck.check((dep.get("spec") or {}).get("replicas", 1) >= 2, "coord.deployment", w, "replicas >= 2")
    ck.check(c.get("args", [None])[0] == "serve", "coord.deployment", w, "runs `serve`")
    live = (c.get("livenessProbe") or {}).get("httpGet") or {}
    ready = (c.get("readinessProbe") or {}).get("httpGet") or {}
    ck.check(live.get("path") == "/healthz" and container_port(cs, live.get("port")) == HTTP_PORT,
             "coord.probes", w, f"liveness probe GET /healthz on {HTTP_PORT}")
    ck.check(ready.get("path") == "/readyz" and container_port(cs, ready.get("port")) == HTTP_PORT,
             "coord.probes", w, f"readiness probe GET /readyz on {HTTP_PORT}")
    # PodDisruptionBudget and autoscaler.
    pdbs = [p for p in by_kind("PodDisruptionBudget") if selects((p.get("spec") or {}).get("selector"), slabels)]
    ck.check(len(pdbs) == 1 and pdbs[0].get("apiVersion") == "policy/v1"
             and isinstance(pdbs[0]["spec"].get("minAvailable"), int)
             and pdbs[0]["spec"]["minAvailable"] >= 1,
             "coord.pdb", ov, "a policy/v1 PodDisruptionBudget with minAvailable >= 1 covers the serving pods")
    hpas = [h for h in by_kind("HorizontalPodAutoscaler")
            if ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == dep["metadata"]["name"]
            and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"]
    ok = len(hpas) == 1 and hpas[0].get("apiVersion") == "autoscaling/v2"
    if ok:
        hs = hpas[0]["spec"]
        ok = (hs.get("minReplicas", 1) >= 2 and hs.get("maxReplicas", 0) >= hs.get("minReplicas", 1)
              and any(m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"
                      for m in hs.get("metrics") or []))
    ck.check(ok, "coord.hpa", ov, "an autoscaling/v2 HorizontalPodAutoscaler on CPU, minReplicas >= 2, targets the Deployment")
    # Training.
    tlabels = {}
    for j in trainers:
        jw = f"{ov}/{name_of(j)}"
        jt = pod_template(j)
        tlabels = labels_of_template(jt)
        js = jt.get("spec") or {}
        jc = (js.get("containers") or [{}])[0]
        jobspec = (j.get("spec") or {}) if j["kind"] == "Job" else ((j.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
        ck.check(jc.get("args", [None])[0] == "train", "coord.training-job", jw, "runs `train`")
        ck.check(js.get("restartPolicy") == "Never", "coord.training-job", jw, "restartPolicy Never (a failed run is a failed Job)")
        ck.check(isinstance(jobspec.get("backoffLimit"), int) and isinstance(jobspec.get("activeDeadlineSeconds"), int),
                 "coord.training-job", jw, "backoffLimit and activeDeadlineSeconds bound it")
        if j["kind"] == "CronJob":
            ck.check((j.get("spec") or {}).get("suspend") is True, "coord.training-job", jw,
                     "the template is suspended (training starts only when the operator creates a Job)")
        ck.check(jc.get("envFrom") == c.get("envFrom") and jc.get("env") == c.get("env"),
                 "coord.same-config", jw, "same environment as the serving replicas")
        tm = [m for m in jc.get("volumeMounts") or [] if m.get("mountPath") == "/models"]
        ck.check(len(tm) == 1 and not tm[0].get("readOnly"), "coord.models", jw, "writes the model store")
    # Model store.
    sm = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == "/models"]
    vols = {v.get("name"): v for v in spec.get("volumes") or []}
    claim = (vols.get(sm[0].get("name")) if sm else {}) or {}
    claim = (claim.get("persistentVolumeClaim") or {}).get("claimName")
    pvc = next((p for p in by_kind("PersistentVolumeClaim") if p["metadata"]["name"] == claim), None)
    ck.check(pvc is not None and "ReadWriteMany" in (pvc.get("spec") or {}).get("accessModes", []),
             "coord.models", w, f"model store is the rendered PVC {claim}, ReadWriteMany (shared by replicas and the Job)")
    ck.check(len(sm) == 1 and sm[0].get("readOnly") is True, "coord.models", w, "serving replicas mount it read-only")
    # Audit database from a Secret.
    for x, xw in [(c, w)] + [((pod_template(j)["spec"]["containers"] or [{}])[0], f"{ov}/{name_of(j)}") for j in trainers]:
        audit = [e for e in x.get("env") or [] if e.get("name") == "TESSERA_COORDINATOR__AUDIT__URL"]
        ck.check(len(audit) == 1 and "secretKeyRef" in (audit[0].get("valueFrom") or {}),
                 "coord.audit-from-secret", xw, "the audit database URL comes from a Secret (secretKeyRef)")
    # API keys and the metrics port, in serving and training pods alike.
    mport = None
    for x, xt, xw in [(c, t, w)] + [((pod_template(j)["spec"]["containers"] or [{}])[0], pod_template(j),
                                     f"{ov}/{name_of(j)}") for j in trainers]:
        xenv, _ = env_map(x, objects, ns)
        check_api_keys(ck, xw, x, xt.get("spec") or {}, xenv)
        got = check_coord_metrics(ck, xw, xt, xenv)
        mport = got if x is c else mport
    env, problems = env_map(c, objects, ns)
    ck.check(not problems, "coord.env", w, "environment resolves offline" + (f": {problems}" if problems else ""))
    # Federation membership agrees with the bank overlays.
    try:
        parties = yaml.safe_load(env.get("TESSERA_COORDINATOR__PARTIES", "[]"))
    except yaml.YAMLError:
        parties = None
    bank_ids = [party_env(b, objs).get("TESSERA_PARTY__PARTY_ID") for b, objs in banks.items()]
    ck.check(parties is not None and sorted(parties) == sorted(bank_ids), "coord.federation", w,
             f"parties {parties} are the bank overlays' party ids {bank_ids}")
    mp = env.get("TESSERA_COORDINATOR__SCORING__MIN_PARTIES", "1")
    ck.check(mp.isdigit() and 1 <= int(mp) <= len(parties or []), "coord.federation", w,
             f"scoring.min_parties {mp} is between 1 and the number of parties")
    # Services.
    svcs = by_kind("Service")
    http = [s for s in svcs if selects(s["spec"].get("selector"), slabels)
            and any(p.get("protocol", "TCP") == "TCP" and p.get("port") == HTTP_PORT for p in s["spec"].get("ports") or [])]
    ck.check(len(http) == 1 and http[0]["spec"].get("type", "ClusterIP") == "ClusterIP",
             "coord.service-http", ov, f"one ClusterIP Service for HTTP {HTTP_PORT} selects the serving pods")
    if http and mport is not None:
        targets = [container_port(cs, p.get("targetPort", p.get("port"))) for p in http[0]["spec"].get("ports") or []
                   if p.get("protocol", "TCP") == "TCP"]
        ck.check(mport in targets, "coord.metrics-port", f"{ov}/{name_of(http[0])}",
                 f"a port of the Service leads to the metrics port {mport} (for a ServiceMonitor)")
    quic = [s for s in svcs if selects(s["spec"].get("selector"), slabels) and s["spec"].get("clusterIP") != "None"
            and any(p.get("protocol") == "UDP" and p.get("port") == QUIC_PORT for p in s["spec"].get("ports") or [])]
    ck.check(len(quic) == 1 and quic[0]["spec"].get("type") in ("LoadBalancer", "NodePort")
             and quic[0]["spec"].get("publishNotReadyAddresses") is True,
             "coord.service-quic", ov,
             f"one LoadBalancer/NodePort Service for QUIC UDP {QUIC_PORT}, publishing not-ready replicas")
    heads = [s for s in svcs if s["spec"].get("clusterIP") == "None"]
    ok = (len(heads) == 1 and heads[0]["spec"].get("publishNotReadyAddresses") is True
          and selects(heads[0]["spec"].get("selector"), slabels)
          and (not trainers or selects(heads[0]["spec"].get("selector"), tlabels))
          and any(p.get("protocol") == "UDP" and p.get("port") == QUIC_PORT for p in heads[0]["spec"].get("ports") or []))
    ck.check(ok, "coord.service-discovery", ov,
             f"a headless Service (UDP {QUIC_PORT}, publishNotReadyAddresses) selects serving and training pods")
    if trainers:
        ck.check(all(not selects(s["spec"].get("selector"), tlabels) for s in http + quic),
                 "coord.training-job", ov, "training pods are not behind the scoring or LoadBalancer Services")
    # Parties find the coordinator under the headless Service's name.
    if heads:
        want = f"{heads[0]['metadata']['name']}.{ns}.svc.cluster.local:{QUIC_PORT}"
        for b, objs in banks.items():
            ck.check(party_env(b, objs).get("TESSERA_PARTY__COORDINATOR_ADDR") == want, "party.discovery", b,
                     f"the party dials the headless Service {want}")
    # NetworkPolicy.
    for lab, what in [(slabels, "serving"), (tlabels, "training")]:
        if not lab:
            continue
        nps = netpols_for(objects, lab)
        ck.check(bool(nps) and any("Ingress" in (n["spec"].get("policyTypes") or []) for n in nps),
                 "coord.netpol", ov, f"{what} pods are isolated for ingress by a NetworkPolicy")
    nps = netpols_for(objects, slabels)
    bank_ns = [NAMESPACE[b] for b in banks]
    quic_ns_ok = {n: False for n in bank_ns}
    monitoring_ok = clients_ok = False
    mport = mport if mport is not None else HTTP_PORT
    allowed = {("UDP", QUIC_PORT), ("TCP", HTTP_PORT), ("TCP", mport)}
    for n in nps:
        nw = f"{ov}/{name_of(n)}"
        for i, r in enumerate(n["spec"].get("ingress") or []):
            peers = r.get("from") or []
            ps = port_set(r)
            ck.check(bool(peers) and bool(ps), "coord.netpol", nw,
                     f"ingress rule {i} names its sources and its ports (no allow-all)")
            ck.check(ps <= allowed, "coord.netpol", nw,
                     f"ingress rule {i} admits only UDP {QUIC_PORT}, TCP {HTTP_PORT} (API) or TCP {mport} (metrics): "
                     f"{sorted(ps, key=str)}")
            for p in peers:
                ok = (("namespaceSelector" in p and p["namespaceSelector"] not in ({}, None))
                      or ("ipBlock" in p and p["ipBlock"].get("cidr") not in ("0.0.0.0/0", "::/0")))
                ck.check(ok, "coord.netpol", nw, f"ingress rule {i}: every source is a namespace or a bounded address block")
            if ("UDP", QUIC_PORT) in ps:
                ck.check(ps == {("UDP", QUIC_PORT)}, "coord.netpol", nw, f"the QUIC rule {i} admits QUIC only")
                for p in peers:
                    for b in bank_ns:
                        if "namespaceSelector" in p and ns_selector_admits(p["namespaceSelector"], b):
                            quic_ns_ok[b] = True
            monitoring_peer = lambda p: ("namespaceSelector" in p  # noqa: E731
                                         and ns_selector_admits(p["namespaceSelector"], MONITORING_NS))
            if ("TCP", mport) in ps and any(monitoring_peer(p) for p in peers):
                monitoring_ok = True
            if ("TCP", HTTP_PORT) in ps and any("namespaceSelector" in p and not monitoring_peer(p) for p in peers):
                clients_ok = True
            if mport != HTTP_PORT and ("TCP", mport) in ps:
                ck.check(all(monitoring_peer(p) and set(p) <= {"namespaceSelector", "podSelector"} for p in peers),
                         "coord.netpol", nw,
                         f"ingress rule {i}: the metrics port {mport} is admitted from {MONITORING_NS} only")
    for b, ok in quic_ns_ok.items():
        ck.check(ok, "coord.netpol", ov, f"QUIC is admitted from the bank namespace {b}")
    ck.check(monitoring_ok, "coord.netpol", ov, f"/metrics (TCP {mport}) is admitted from {MONITORING_NS}")
    ck.check(clients_ok, "coord.netpol", ov, f"the API (TCP {HTTP_PORT}) is admitted from a client namespace")


def run_policy(docs: dict[str, list[dict]], verbose: bool = True) -> Checker:
    ck = Checker(verbose)
    for o in OVERLAYS:
        if verbose:
            print(f"-- {o} ({len(docs[o])} objects)")
        check_overlay_common(ck, o, docs[o])
        if o in BANKS:
            check_party(ck, o, docs[o])
    if verbose:
        print("-- coordinator (federation-wide rules)")
    check_coordinator(ck, docs["coordinator"], {b: docs[b] for b in BANKS})
    return ck


# ---------------------------------------------------------------------------- self-test

def find(docs, overlay, kind, name=None):
    for o in docs[overlay]:
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name):
            return o
    raise KeyError(f"{overlay}: no {kind}/{name}")


def container(docs, overlay, kind, name=None):
    return pod_template(find(docs, overlay, kind, name))["spec"]["containers"][0]


def _m_rofs(d):
    del container(d, "card", "Deployment")["securityContext"]["readOnlyRootFilesystem"]


def _m_hostpath(d):
    pod_template(find(d, "auto", "Deployment"))["spec"]["volumes"].append(
        {"name": "host", "hostPath": {"path": "/var/run"}})


def _m_service(d):
    d["savings"].append({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": "party", "namespace": "tessera-savings"},
                         "spec": {"selector": dict(PARTY_LABEL), "ports": [{"port": 9100}]}})


def _m_egress(d):
    find(d, "home", "NetworkPolicy")["spec"]["egress"].append({"ports": [{"protocol": "TCP", "port": 443}]})


def _m_ingress_all(d):
    find(d, "card", "NetworkPolicy")["spec"]["ingress"][0]["from"] = [{"namespaceSelector": {}}]


def _m_readiness(d):
    del container(d, "coordinator", "Deployment")["readinessProbe"]


def _m_latest(d):
    c = container(d, "coordinator", "Deployment")
    c["image"] = c["image"].rsplit(":", 1)[0] + ":latest"


def _m_pdb(d):
    d["coordinator"].remove(find(d, "coordinator", "PodDisruptionBudget"))


def _m_hpa(d):
    d["coordinator"].remove(find(d, "coordinator", "HorizontalPodAutoscaler"))


def _m_secret_rw(d):
    for m in container(d, "card", "Deployment")["volumeMounts"]:
        if m["name"] == "tls":
            m["readOnly"] = False


def _m_limits(d):
    del container(d, "coordinator", "CronJob")["resources"]["limits"]


def _m_replicas(d):
    find(d, "card", "Deployment")["spec"]["replicas"] = 2


def _m_token(d):
    pod_template(find(d, "coordinator", "Deployment"))["spec"]["automountServiceAccountToken"] = True


def _m_coord_allow_all(d):
    find(d, "coordinator", "NetworkPolicy")["spec"]["ingress"].append({"ports": [{"protocol": "TCP", "port": 8080}]})


def _m_audit_literal(d):
    for e in container(d, "coordinator", "Deployment")["env"]:
        if e["name"] == "TESSERA_COORDINATOR__AUDIT__URL":
            e.pop("valueFrom")
            e["value"] = "postgres://tessera:hunter2@db:5432/tessera"


def _m_headless(d):
    for s in d["coordinator"]:
        if s.get("kind") == "Service" and s["spec"].get("clusterIP") == "None":
            s["spec"]["publishNotReadyAddresses"] = False


def _m_privileged(d):
    container(d, "home", "Deployment")["securityContext"]["privileged"] = True


def _m_hostnetwork(d):
    pod_template(find(d, "coordinator", "CronJob"))["spec"]["hostNetwork"] = True


def _m_root(d):
    container(d, "auto", "Deployment")["securityContext"]["runAsUser"] = 0


def _m_liveness(d):
    del container(d, "coordinator", "Deployment")["livenessProbe"]


def _m_party_parties(d):
    cm = find(d, "coordinator", "ConfigMap")
    cm["data"]["TESSERA_COORDINATOR__PARTIES"] = '["card", "auto", "savings"]'


def _keys_mount(d, kind):
    return next(m for m in container(d, "coordinator", kind)["volumeMounts"] if m["name"] == "api-keys")


def _m_keys_subpath(d):
    m = _keys_mount(d, "Deployment")
    m["mountPath"] = m["mountPath"] + "/api-keys.toml"
    m["subPath"] = "api-keys.toml"


def _m_keys_job_missing(d):
    c = container(d, "coordinator", "CronJob")
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "api-keys"]


def _m_auth_off(d):
    find(d, "coordinator", "ConfigMap")["data"][AUTH_MODE_ENV] = "none"


def _m_metrics_to_clients(d):
    for r in find(d, "coordinator", "NetworkPolicy")["spec"]["ingress"]:
        if {"protocol": "TCP", "port": HTTP_PORT} in r.get("ports", []):
            r["ports"].append({"protocol": "TCP", "port": COORD_METRICS_PORT})


def _m_metrics_annotation(d):
    t = pod_template(find(d, "coordinator", "Deployment"))
    t["metadata"]["annotations"]["prometheus.io/port"] = str(HTTP_PORT)


MUTATIONS = [
    ("card party: readOnlyRootFilesystem dropped", _m_rofs, "container.read-only-root-fs"),
    ("auto party: a hostPath volume added", _m_hostpath, "pod.no-hostpath"),
    ("savings: a Service selecting the party added", _m_service, "party.no-service"),
    ("home party NetworkPolicy: egress to TCP 443 added", _m_egress, "party.netpol-egress"),
    ("card party NetworkPolicy: metrics open to every namespace", _m_ingress_all, "party.netpol-ingress"),
    ("coordinator: readiness probe removed", _m_readiness, "coord.probes"),
    ("coordinator: liveness probe removed", _m_liveness, "coord.probes"),
    ("coordinator: image tag :latest", _m_latest, "container.image-pinned"),
    ("coordinator: PodDisruptionBudget removed", _m_pdb, "coord.pdb"),
    ("coordinator: HorizontalPodAutoscaler removed", _m_hpa, "coord.hpa"),
    ("card party: certificate Secret mounted read-write", _m_secret_rw, "container.secret-mounts-read-only"),
    ("training Job: resource limits removed", _m_limits, "container.resources"),
    ("card party: replicas 2", _m_replicas, "party.deployment-single"),
    ("coordinator: service account token mounted", _m_token, "pod.automount-token-off"),
    ("coordinator NetworkPolicy: HTTP from anywhere", _m_coord_allow_all, "coord.netpol"),
    ("coordinator: audit URL with password as a literal", _m_audit_literal, "coord.audit-from-secret"),
    ("headless Service: not-ready replicas unpublished", _m_headless, "coord.service-discovery"),
    ("home party: privileged", _m_privileged, "container.not-privileged"),
    ("training Job: hostNetwork", _m_hostnetwork, "pod.no-host-namespaces"),
    ("auto party: runAsUser 0", _m_root, "pod.run-as-user"),
    ("coordinator: a bank missing from parties", _m_party_parties, "coord.federation"),
    ("coordinator: API keys Secret mounted with subPath", _m_keys_subpath, "coord.api-keys"),
    ("training Job: API keys Secret not mounted", _m_keys_job_missing, "coord.api-keys"),
    ("coordinator: auth.mode none in the ConfigMap", _m_auth_off, "coord.api-keys"),
    ("coordinator NetworkPolicy: metrics port open to the client namespace", _m_metrics_to_clients, "coord.netpol"),
    ("coordinator: scrape annotation on the API port, not the metrics port", _m_metrics_annotation,
     "coord.metrics-port"),
]


def self_test(docs: dict[str, list[dict]]) -> int:
    base = run_policy(copy.deepcopy(docs), verbose=False)
    bad = 0
    if base.failures:
        print(f"  FAIL the unbroken manifests do not pass ({len(base.failures)} failures)")
        return 1
    print(f"  ok   the unbroken manifests pass ({base.passed} assertions)")
    for what, mutate, rule in MUTATIONS:
        d = copy.deepcopy(docs)
        mutate(d)
        ck = run_policy(d, verbose=False)
        rules = sorted({r for r, _, _ in ck.failures})
        if rule in rules:
            first = next(f for f in ck.failures if f[0] == rule)
            print(f"  ok   broken copy rejected as intended: {what} -> [{rule}] {first[1]}: {first[2]}")
        else:
            bad += 1
            print(f"  FAIL broken copy NOT rejected by [{rule}]: {what} (failed rules: {rules or 'none'})")
    print(f"self-test: {len(MUTATIONS) - bad} of {len(MUTATIONS)} broken copies rejected by the rule they break")
    return 1 if bad else 0


# ---------------------------------------------------------------------------- monitors

def monitors(d: Path) -> int:
    ck = Checker()
    for o in OVERLAYS:
        objs = load_file(d / f"{o}.yaml")
        mons = [x for x in objs if str(x.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
        ns = NAMESPACE[o]
        want = "PodMonitor" if o in BANKS else "ServiceMonitor"
        ck.check(len(mons) == 1 and mons[0].get("kind") == want and mons[0]["apiVersion"] == "monitoring.coreos.com/v1",
                 "monitor.present", o, f"one monitoring.coreos.com/v1 {want}")
        if not mons:
            continue
        m = mons[0]
        w = f"{o}/{name_of(m)}"
        spec = m.get("spec") or {}
        ck.check(m["metadata"].get("namespace") == ns, "monitor.namespace", w, f"namespace is {ns}")
        ck.check(set(spec) <= {"selector", "endpoints", "podMetricsEndpoints", "namespaceSelector", "jobLabel"},
                 "monitor.shape", w, "spec has only known fields")
        sel = spec.get("selector") or {}
        if want == "ServiceMonitor":
            targets = [s for s in objs if s.get("kind") == "Service"
                       and selects(sel, (s.get("metadata") or {}).get("labels") or {})]
            ck.check(len(targets) == 1 and targets[0]["spec"].get("type", "ClusterIP") == "ClusterIP",
                     "monitor.selects", w, "selects exactly the coordinator's ClusterIP Service (by its labels)")
            eps = spec.get("endpoints") or []
            names = {p.get("name") for t in targets for p in t["spec"].get("ports") or []}
            ck.check(bool(eps) and all(e.get("port") in names and e.get("path") == "/metrics" for e in eps),
                     "monitor.endpoints", w, f"scrapes /metrics on a named port of that Service {sorted(names, key=str)}")
            # /metrics is served on listen_metrics when set, not on the API's port.
            dep = next((x for x in objs if x.get("kind") == "Deployment"
                        and labels_of_template(pod_template(x)).get("app.kubernetes.io/name") == COORD_NAME), None)
            if dep is not None and targets:
                cs = pod_template(dep)["spec"].get("containers") or []
                env, _ = env_map(cs[0], objs, ns)
                mport = coord_metrics_port(env)
                by_name = {p.get("name"): p for p in targets[0]["spec"].get("ports") or []}
                reach = [container_port(cs, (lambda sp: sp.get("targetPort", sp.get("port")))(by_name.get(e.get("port"), {})))
                         for e in eps]
                ck.check(bool(reach) and all(r == mport for r in reach), "monitor.endpoints", w,
                         f"its endpoint ports lead to the coordinator's metrics port {mport}")
        else:
            pods = [pod_template(x) for x in objs if x.get("kind") in WORKLOAD_KINDS]
            targets = [t for t in pods if selects(sel, labels_of_template(t))]
            ck.check(len(targets) == 1, "monitor.selects", w, "selects the party pods")
            names = {p.get("name") for t in targets for c in t["spec"]["containers"] for p in c.get("ports") or []}
            eps = spec.get("podMetricsEndpoints") or []
            ck.check(bool(eps) and all(e.get("port") in names and e.get("path") == "/metrics" for e in eps),
                     "monitor.endpoints", w, f"scrapes /metrics on a named container port {sorted(names, key=str)}")
    print(f"monitors: {ck.passed} assertions passed, {len(ck.failures)} failed")
    return 1 if ck.failures else 0


# ---------------------------------------------------------------------------- PrometheusRule

def first_difference(a, b, path: str = "groups") -> str | None:
    """Where two parsed YAML documents first differ (None if equal), for the failure message."""
    if type(a) is not type(b):
        return f"{path}: {a!r} here, {b!r} in the rules file"
    if isinstance(a, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{path}.{k}: only in {'the rules file' if k in b else 'the PrometheusRule'}"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b)):
            name = (x.get("name") or x.get("alert") or x.get("record")) if isinstance(x, dict) else None
            d = first_difference(x, y, f"{path}[{i}{' ' + name if name else ''}]")
            if d:
                return d
        if len(a) != len(b):
            return f"{path}: {len(a)} entries here, {len(b)} in the rules file"
        return None
    return None if a == b else f"{path}: {a!r} here, {b!r} in the rules file"


def prometheus_rule(rendered: Path, rules_file: Path, core: Path) -> int:
    """The PrometheusRule component carries exactly the rules of the Prometheus rules file."""
    ck = Checker()
    objs = load_file(rendered)
    ns = NAMESPACE["coordinator"]
    w = "coordinator+prometheusrule"
    crs = [o for o in objs if str(o.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
    ck.check(len(crs) == 1 and crs[0].get("kind") == "PrometheusRule"
             and crs[0].get("apiVersion") == "monitoring.coreos.com/v1",
             "rule.present", w, "one monitoring.coreos.com/v1 PrometheusRule")
    key = lambda o: (o.get("kind"), name_of(o), yaml.safe_dump(o, sort_keys=True))  # noqa: E731
    rest = sorted((key(o) for o in objs if o not in crs), key=str)
    ck.check(rest == sorted((key(o) for o in load_file(core)), key=str), "rule.only", w,
             "the component adds the PrometheusRule and changes nothing else in overlays/coordinator")
    want = (yaml.safe_load(rules_file.read_text()) or {}).get("groups")
    ck.check(isinstance(want, list) and bool(want), "rule.source", str(rules_file), "has a non-empty groups list")
    if len(crs) != 1 or not isinstance(want, list):
        print(f"prometheusrule: {ck.passed} assertions passed, {len(ck.failures)} failed")
        return 1
    r = crs[0]
    w = f"{w}/{name_of(r)}"
    ck.check((r.get("metadata") or {}).get("namespace") == ns, "rule.namespace", w, f"namespace is {ns}")
    spec = r.get("spec") or {}
    ck.check(set(spec) == {"groups"}, "rule.shape", w, f"spec holds groups only ({sorted(spec)})")
    got = spec.get("groups")
    diff = first_difference(got, want)
    n = sum(len(g.get("rules") or []) for g in want if isinstance(g, dict))
    ck.check(diff is None, "rule.groups", w,
             f"spec.groups equal the groups of {rules_file} as data ({len(want)} groups, {n} rules)"
             + (f"; first difference: {diff}" if diff else ""))
    # The comparison can fail: a changed threshold, a dropped rule, an added label.
    broken = []
    for what, mutate in [
        ("a `for` changed", lambda g: g[0]["rules"][0].update({"for": "1h"})),
        ("the last rule dropped", lambda g: g[-1]["rules"].pop()),
        ("a label added", lambda g: g[0]["rules"][0].setdefault("labels", {}).update({"team": "x"})),
    ]:
        g = copy.deepcopy(want)
        mutate(g)
        if first_difference(g, want) is None:
            broken.append(what)
    ck.check(not broken, "rule.groups", "self-test",
             "a copy with a `for` changed, a rule dropped or a label added is found different"
             + (f" (NOT found: {', '.join(broken)})" if broken else ""))
    print(f"prometheusrule: {ck.passed} assertions passed, {len(ck.failures)} failed")
    return 1 if ck.failures else 0


# ---------------------------------------------------------------------------- examples

SPIFFE = re.compile(r"spiffe://([a-z0-9.-]+)/(coordinator|party/([a-z0-9]([a-z0-9-]*[a-z0-9])?))")


def examples(exdir: Path, rendered: Path) -> int:
    """deploy/k8s/examples agree with the overlays they are written for."""
    docs = load_dir(rendered)
    ck = Checker()
    objs = []
    for f in sorted(exdir.rglob("*.yaml")):
        objs += [(f.relative_to(exdir), o) for o in load_file(f)]
    ck.check(bool(objs), "examples.present", str(exdir), "examples exist")

    def workload_of(overlay):
        w = workloads(docs[overlay])[0] if overlay in BANKS else next(
            o for o in docs[overlay] if o.get("kind") == "Deployment")
        t = pod_template(w)
        env, _ = env_map(t["spec"]["containers"][0], docs[overlay], NAMESPACE[overlay])
        vols = {v["name"]: v for v in t["spec"].get("volumes") or []}
        return env, vols

    issuers = {o["metadata"]["name"] for _, o in objs if o.get("kind") in ("ClusterIssuer", "Issuer")}
    party_names = {party_env(b, docs[b]).get("TESSERA_PARTY__COORDINATOR_NAME") for b in BANKS}
    for f, o in objs:
        w = f"examples/{f}: {name_of(o)}"
        ns = (o.get("metadata") or {}).get("namespace")
        overlay = next((k for k, v in NAMESPACE.items() if v == ns), None)
        if o.get("kind") == "Certificate":
            spec = o.get("spec") or {}
            ck.check(o.get("apiVersion") == "cert-manager.io/v1" and overlay is not None, "examples.certificate", w,
                     "cert-manager.io/v1, in an overlay's namespace")
            if overlay is None:
                continue
            env, vols = workload_of(overlay)
            prefix = "TESSERA_PARTY" if overlay in BANKS else "TESSERA_COORDINATOR"
            fed = env.get(f"{prefix}__TRANSPORT__FEDERATION", "tessera")
            want = f"spiffe://{fed}/coordinator" if overlay == "coordinator" else \
                f"spiffe://{fed}/party/{env.get('TESSERA_PARTY__PARTY_ID')}"
            uris = spec.get("uris") or []
            ck.check(uris == [want] and SPIFFE.fullmatch(want), "examples.certificate", w, f"URI SAN is exactly {want}")
            usages = set(spec.get("usages") or [])
            wantu = {"digital signature", "server auth", "client auth"} if overlay == "coordinator" \
                else {"digital signature", "client auth"}
            ck.check(usages == wantu, "examples.certificate", w, f"usages are {sorted(wantu)}")
            ck.check(spec.get("secretName") == vols.get("tls", {}).get("secret", {}).get("secretName"),
                     "examples.certificate", w, f"Secret {spec.get('secretName')} is the one overlays/{overlay} mounts")
            ck.check((spec.get("issuerRef") or {}).get("name") in issuers, "examples.certificate", w,
                     "its issuer is the example CA issuer")
            if overlay == "coordinator":
                ck.check(party_names <= set(spec.get("dnsNames") or []), "examples.certificate", w,
                         f"DNS names include the name the parties verify {sorted(party_names)}")
            else:
                ck.check(not spec.get("dnsNames"), "examples.certificate", w, "a party certificate carries no DNS name")
        elif o.get("kind") in ("PersistentVolumeClaim", "Pod"):
            ck.check(overlay in BANKS, "examples.data", w, "in a bank's namespace")
            if overlay not in BANKS:
                continue
            _, vols = workload_of(overlay)
            want = vols.get("data", {}).get("persistentVolumeClaim", {}).get("claimName")
            if o["kind"] == "PersistentVolumeClaim":
                ck.check(o["metadata"]["name"] == want, "examples.data", w, f"is the data claim overlays/{overlay} mounts ({want})")
            else:
                claims = [v["persistentVolumeClaim"]["claimName"] for v in o["spec"].get("volumes") or []
                          if "persistentVolumeClaim" in v]
                ck.check(claims == [want], "examples.data", w, f"mounts the data claim {want}")
                check_pod(ck, f"examples/{f}", o, [], tessera=False)
    print(f"examples: {ck.passed} assertions passed, {len(ck.failures)} failed")
    return 1 if ck.failures else 0


# ---------------------------------------------------------------------------- helpers

def split_crds(src: Path, dst: Path) -> int:
    docs = load_file(src)
    keep = [x for x in docs if not str(x.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
    with open(dst, "w") as f:
        yaml.safe_dump_all(keep, f, sort_keys=False)
    return 0


def add_to_kustomization(path: Path, what: str, args: list[str]) -> int:
    k = yaml.safe_load(path.read_text())
    if what == "component":
        k.setdefault("components", []).append(args[0])
    elif what == "patch":
        k.setdefault("patches", []).append({"path": args[0]})
    elif what == "image":
        name, new_name, new_tag = args
        k.setdefault("images", []).append({"name": name, "newName": new_name, "newTag": new_tag})
    else:
        raise SystemExit(f"add-to-kustomization: unknown {what}")
    path.write_text(yaml.safe_dump(k, sort_keys=False))
    return 0


def images(path: Path, expected: str) -> int:
    found = []
    for o in load_file(path):
        t = pod_template(o)
        if t:
            for c in (t["spec"].get("containers") or []) + (t["spec"].get("initContainers") or []):
                found.append((name_of(o), c.get("image")))
    bad = [f for f in found if f[1] != expected]
    for w, i in found:
        print(f"  {'ok  ' if i == expected else 'FAIL'} {path.stem}/{w}: image {i}")
    if not found or bad:
        print(f"image override: expected {expected} everywhere", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------- config check

REQUIRED = {"tessera-party": "TESSERA_PARTY__PARTY_ID", "tessera-coordinator": "TESSERA_COORDINATOR__PARTIES"}
PREFIX = {"tessera-party": "TESSERA_PARTY", "tessera-coordinator": "TESSERA_COORDINATOR"}


def check_config_argv(binary: str, args: list[str]) -> tuple[list[str] | None, str]:
    """The `check-config` arguments for a container's args, or None and why not."""
    args = list(args or [])
    rest: list[str] = []
    if binary == "tessera-coordinator":
        if not args or args[0] not in ("serve", "train"):
            return None, f"coordinator args {args} do not start with serve or train"
        sub, args = args[0], args[1:]
        allowed_flags = {"serve": {"--train-if-none", "--train"}, "train": set()}[sub]
        allowed_values = {"serve": set(), "train": {"--model-id"}}[sub]
    else:
        allowed_flags, allowed_values = set(), set()
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--config" and i + 1 < len(args):
            rest += ["--config", args[i + 1]]
            i += 2
        elif a.startswith("--config="):
            rest.append(a)
            i += 1
        elif a in allowed_flags:
            i += 1
        elif a in allowed_values and i + 1 < len(args):
            i += 2
        else:
            return None, (f"argument {a!r} is not known to the config check: teach check_config_argv in "
                          "scripts/k8s_policy.py what it means")
    return ["check-config"] + rest, ""


def run_binary(argv: list[str], env: dict, cwd: str) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, "timed out after 60 s (check-config must not start the service)"
    return p.returncode, (p.stderr + p.stdout).strip()


def stand_in_secret_files(env: dict, container: dict, pod_spec: dict, cwd: str) -> tuple[dict, list[str]]:
    """`env` with every path into a mounted Secret replaced by a stand-in file under `cwd`
    (SECRET_FILE_PLACEHOLDERS), as the kubelet would have put the Secret's key there."""
    out, problems = dict(env), []
    for k, v in env.items():
        if not v.startswith("/"):
            continue
        m, vol, rel = secret_mount_of(v, container, pod_spec)
        secret = (vol or {}).get("secret")
        if m is None or secret is None or not rel:
            continue
        items = {i.get("path"): i.get("key") for i in secret.get("items") or []}
        key = items.get(rel, rel if not items else None)
        content = SECRET_FILE_PLACEHOLDERS.get((secret.get("secretName"), key))
        if content is None:
            problems.append(f"env {k}: no stand-in for Secret {secret.get('secretName')} key {key} "
                            "(add one to SECRET_FILE_PLACEHOLDERS in scripts/k8s_policy.py)")
            continue
        f = Path(cwd) / "secrets" / str(secret.get("secretName")) / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
        f.chmod(0o600)
        out[k] = str(f)
    return out, problems


def config_check(d: Path, bindir: Path) -> int:
    docs = load_dir(d)
    ran = failed = 0
    with tempfile.TemporaryDirectory(prefix="tessera-k8s-config-") as cwd:
        for o in OVERLAYS:
            for w in workloads(docs[o]):
                t = pod_template(w)
                for c in (t["spec"].get("containers") or []) + (t["spec"].get("initContainers") or []):
                    where = f"{o}/{name_of(w)} container {c.get('name')}"
                    cmd = c.get("command") or []
                    binary = os.path.basename(cmd[0]) if cmd else ""
                    if binary not in REQUIRED or len(cmd) != 1:
                        print(f"  FAIL {where}: command {cmd} is not a Tessera party or coordinator the "
                              "config check knows (every container must be checked)")
                        failed += 1
                        continue
                    exe = bindir / binary
                    if not (exe.is_file() and os.access(exe, os.X_OK)):
                        print(f"  FAIL {where}: {exe} is missing: build it first "
                              "(cargo build --release -p tessera-party -p tessera-coordinator)")
                        failed += 1
                        continue
                    sub, why = check_config_argv(binary, c.get("args") or [])
                    env, problems = env_map(c, docs[o], NAMESPACE[o])
                    env, file_problems = stand_in_secret_files(env, c, t["spec"], cwd)
                    problems += file_problems
                    if sub is None or problems:
                        print(f"  FAIL {where}: {why or '; '.join(problems)}")
                        failed += 1
                        continue
                    argv = [str(exe)] + sub
                    shown = " ".join(argv[1:])
                    rc, out = run_binary(argv, env, cwd)
                    ran += 1
                    if rc == 0:
                        print(f"  ok   {where}: `{binary} {shown}` with its {len(env)} variables exits 0")
                    else:
                        failed += 1
                        print(f"  FAIL {where}: `{binary} {shown}` exited {rc} with the container's environment:")
                        print("       " + out.replace("\n", "\n       "))
                        print(f"  FAIL {where}: broken variants not run (they prove nothing while the "
                              "container's own configuration fails)")
                        continue
                    # The check must be able to fail: a required key removed, an unknown key added.
                    req = REQUIRED[binary]
                    variants = [
                        (f"without {req}", {k: v for k, v in env.items() if k != req}),
                        (f"with {PREFIX[binary]}__NO_SUCH_KEY", {**env, f"{PREFIX[binary]}__NO_SUCH_KEY": "1"}),
                    ]
                    if KEYS_ENV in env:
                        variants += [
                            (f"without {KEYS_ENV} (auth.mode keys needs it)",
                             {k: v for k, v in env.items() if k != KEYS_ENV}),
                            (f"with {KEYS_ENV} naming a missing file", {**env, KEYS_ENV: str(Path(cwd) / "no-such-keys.toml")}),
                        ]
                    for what, venv in variants:
                        rc, out = run_binary(argv, venv, cwd)
                        ran += 1
                        if rc != 0:
                            print(f"  ok   {where}: {what}, check-config exits {rc} as it must")
                        else:
                            failed += 1
                            print(f"  FAIL {where}: {what}, check-config exited 0: it does not check the environment")
    print(f"config check: {ran} runs, {failed} failed")
    return 1 if failed or not ran else 0


# ---------------------------------------------------------------------------- main

def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "policy" and len(args) == 1:
        ck = run_policy(load_dir(Path(args[0])))
        print(f"policy: {ck.passed} assertions passed, {len(ck.failures)} failed")
        for rule, where, what in ck.failures:
            print(f"policy violation [{rule}] {where}: {what}", file=sys.stderr)
        return 1 if ck.failures else 0
    if cmd == "self-test" and len(args) == 1:
        return self_test(load_dir(Path(args[0])))
    if cmd == "monitors" and len(args) == 1:
        return monitors(Path(args[0]))
    if cmd == "prometheusrule" and len(args) == 3:
        return prometheus_rule(Path(args[0]), Path(args[1]), Path(args[2]))
    if cmd == "split-crds" and len(args) == 2:
        return split_crds(Path(args[0]), Path(args[1]))
    if cmd == "add-to-kustomization" and len(args) >= 3:
        return add_to_kustomization(Path(args[0]), args[1], args[2:])
    if cmd == "images" and len(args) == 2:
        return images(Path(args[0]), args[1])
    if cmd == "examples" and len(args) == 2:
        return examples(Path(args[0]), Path(args[1]))
    if cmd == "config-check" and len(args) == 2:
        return config_check(Path(args[0]), Path(args[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
