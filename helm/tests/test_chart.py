#!/usr/bin/env python3
"""Tests of the angzarr-bus Helm chart (helm/angzarr-bus).

Run with helm/tests/run.sh, which installs what this needs:
  helm-sdkpy           Helm's own Go code (lint, install) through cffi
  kubernetes-validate  the Kubernetes OpenAPI schemas, to validate manifests

What is checked:
  * `helm lint` (Helm's linter, via helm_sdkpy.Lint) passes on the chart, and
    reports an error on a deliberately broken copy (so the lint can fail).
  * The chart is rendered by Helm's own engine for several value sets. helm-sdkpy
    has no `helm template` / dry-run entry point, so each value set is
    *installed* with helm_sdkpy.Install against a stub Kubernetes API server
    that this file runs on 127.0.0.1 (discovery documents, accepts every
    create, stores nothing). Helm renders, validates the values against
    values.schema.json, and returns the release with its rendered manifest;
    the stub also records the objects Helm sent, which must be the same set.
  * Every rendered manifest validates against Kubernetes 1.33's schemas with
    kubernetes-validate in strict mode (unknown fields are errors).
  * Content: the StatefulSet exists only when the bundled server is enabled;
    BUS_BACKEND / NATS_URL of the app; the ConfigMap's bus.toml parses
    (tomllib) with the expected keys and values; /healthz probes on the
    monitoring port; resource presets and explicit resources; bad values
    (missing url, unknown backend, unknown preset) are refused; credentials
    (bus.nats.auth) as secretKeyRef env / a mounted .creds file in the app
    and an authorization config file for the bundled server; TLS
    (bus.nats.tls) mounted from the Secret, tls_* keys in bus.toml and the
    server's --tls flags.
  * The Angzarr documentation's values, verbatim, use their bus.nats.url (no
    bundled server); combinations that cannot be honoured fail with a message
    naming the values to change.
  * The optional ServiceMonitor (checked structurally: kubernetes-validate
    has no schema for CRD kinds) selects the headless Service's monitoring
    port and /metrics; the optional Grafana dashboard ConfigMap ships
    dashboards/angzarr-bus.json as it is (its queries are checked against a
    live server's /metrics by bus/tests/grafana_dashboard.rs).

Prints one line per test and a closing `chart: N passed, N failed`; exits 1
when any test failed.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import tomllib
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "angzarr-bus"
KUBE_VERSION = "1.33.0"
NAMESPACE = "bus-test"

# Helm keeps caches and repository config under these, and client-go a
# discovery cache under $HOME/.kube: point them all at a temporary directory
# (before helm_sdkpy loads its library, which reads the environment then).
_helm_home = tempfile.mkdtemp(prefix="helm-home-")
atexit.register(shutil.rmtree, _helm_home, True)
os.environ["HOME"] = _helm_home
for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
    os.environ[var] = os.path.join(_helm_home, var.lower())
os.environ["KUBECACHEDIR"] = os.path.join(_helm_home, "kube-cache")

import helm_sdkpy  # noqa: E402  (after the environment above)
import kubernetes_validate  # noqa: E402

# The presets as documented in values.yaml / helm/README.md.
PRESETS = {
    "nano": ({"cpu": "100m", "memory": "128Mi"}, {"cpu": "150m", "memory": "192Mi"}),
    "micro": ({"cpu": "250m", "memory": "256Mi"}, {"cpu": "375m", "memory": "384Mi"}),
    "small": ({"cpu": "500m", "memory": "512Mi"}, {"cpu": "750m", "memory": "768Mi"}),
    "medium": ({"cpu": "500m", "memory": "1024Mi"}, {"cpu": "750m", "memory": "1536Mi"}),
    "large": ({"cpu": "1", "memory": "2048Mi"}, {"cpu": "1500m", "memory": "3072Mi"}),
    "xlarge": ({"cpu": "1", "memory": "3072Mi"}, {"cpu": "3", "memory": "6144Mi"}),
    "2xlarge": ({"cpu": "1", "memory": "3072Mi"}, {"cpu": "6", "memory": "12288Mi"}),
}


# --------------------------------------------------------------------------
# A stub Kubernetes API server on loopback: enough for `helm install` to
# render and "apply" a release. It stores nothing and records what it got.
# --------------------------------------------------------------------------

RESOURCES = {
    "v1": [
        ("configmaps", "ConfigMap"),
        ("services", "Service"),
        ("secrets", "Secret"),
        ("serviceaccounts", "ServiceAccount"),
        ("persistentvolumeclaims", "PersistentVolumeClaim"),
        ("pods", "Pod"),
    ],
    "apps/v1": [("deployments", "Deployment"), ("statefulsets", "StatefulSet")],
    "batch/v1": [("jobs", "Job")],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")],
    # The Prometheus Operator's CRD, as a cluster with kube-prometheus-stack has it.
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor")],
}


class StubApi(BaseHTTPRequestHandler):
    created: list[dict] = []  # objects Helm created (JSON bodies), all releases
    lock = threading.Lock()

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self) -> None:
        self._send(
            404,
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404},
        )

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if self.command == "GET":
            major, minor, _ = KUBE_VERSION.split(".")
            if path == "/version":
                return self._send(200, {"major": major, "minor": minor, "gitVersion": f"v{KUBE_VERSION}"})
            if path == "/api":
                return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
            if path == "/apis":
                groups = []
                for gv in RESOURCES:
                    if "/" in gv:
                        group, version = gv.split("/")
                        entry = {"groupVersion": gv, "version": version}
                        groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
                return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
            for gv, resources in RESOURCES.items():
                if path == ("/api/v1" if gv == "v1" else f"/apis/{gv}"):
                    return self._send(
                        200,
                        {
                            "kind": "APIResourceList",
                            "apiVersion": "v1",
                            "groupVersion": gv,
                            "resources": [
                                {
                                    "name": plural,
                                    "singularName": kind.lower(),
                                    "namespaced": True,
                                    "kind": kind,
                                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                                }
                                for plural, kind in resources
                            ],
                        },
                    )
            return self._not_found()  # nothing exists yet
        if self.command in ("POST", "PUT", "PATCH"):
            try:
                obj = json.loads(body)
            except ValueError:
                # Helm's release record (a Secret, sent as protobuf): accept it.
                obj = {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "release", "namespace": NAMESPACE}}
            else:
                if self.command == "POST":
                    with self.lock:
                        self.created.append(obj)
            return self._send(201 if self.command == "POST" else 200, obj)
        if self.command == "DELETE":
            return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
        return self._not_found()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def start_stub() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://{host}:{port}"}}],
        "users": [{"name": "stub", "user": {"token": "stub"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": NAMESPACE}}],
        "current-context": "stub",
    }
    path = os.path.join(_helm_home, "kubeconfig.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(kubeconfig, f)
    return server, path


STUB, KUBECONFIG = start_stub()
CONFIG = helm_sdkpy.Configuration(namespace=NAMESPACE, kubeconfig=KUBECONFIG)
_release_counter = 0


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


class Rendered:
    def __init__(self, release: str, docs: list[dict]):
        self.release = release
        self.docs = docs

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name_suffix: str | None = None) -> dict:
        found = [d for d in self.all(kind) if name_suffix is None or d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"expected one {kind} *{name_suffix or ''}, got {[d['metadata']['name'] for d in found]}"
        return found[0]

    def bus_toml(self) -> dict:
        (cm,) = [d for d in self.all("ConfigMap") if "bus.toml" in d.get("data", {})]
        assert cm["metadata"]["name"] == f"{self.release}-angzarr-bus-config", cm["metadata"]
        return tomllib.loads(cm["data"]["bus.toml"])

    def app_container(self) -> dict:
        workloads = self.all("Deployment") + self.all("Job")
        assert len(workloads) == 1, f"expected one app workload, got {self.kinds()}"
        containers = workloads[0]["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["poker"], containers
        return containers[0]

    def app_env(self) -> dict:
        return {e["name"]: e.get("value") for e in self.app_container().get("env", [])}

    def server_container(self) -> dict:
        sts = self.one("StatefulSet")
        containers = sts["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["server"], containers
        return containers[0]


def render(values: dict | None = None) -> Rendered:
    """helm install <release> helm/angzarr-bus (values) against the stub API."""
    global _release_counter
    _release_counter += 1
    release = f"r{_release_counter}"
    before = len(StubApi.created)
    result = asyncio.run(
        helm_sdkpy.Install(CONFIG).run(release, str(CHART), values=values or {}, wait=False, timeout=60)
    )
    assert result.get("info", {}).get("status") == "deployed", result.get("info")
    docs = [d for d in yaml.safe_load_all(result["manifest"]) if d]
    # What Helm sent to the API server is what it rendered.
    sent = [
        o
        for o in StubApi.created[before:]
        if o.get("metadata", {}).get("annotations", {}).get("meta.helm.sh/release-name") == release
    ]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in sent) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in docs
    ), "objects created differ from the release manifest"
    values = values or {}
    for doc in docs:
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        custom = CUSTOM_RESOURCE_CHECKS.get((doc["apiVersion"], doc["kind"]))
        if custom:
            # kubernetes-validate has no schema for CRD kinds: check the fields
            # the CRD requires and allows ourselves (see check_service_monitor).
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                custom(doc)
            else:
                raise AssertionError(f"kubernetes-validate now knows {what}: validate it with its schema")
        else:
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                raise AssertionError(f"{what} is not a valid Kubernetes {KUBE_VERSION} object: {e}") from e
        # Everything in the release's namespace, except what the values move:
        # the ServiceMonitor (to Prometheus') and the dashboard (to Grafana's).
        want_ns = NAMESPACE
        if doc["kind"] == "ServiceMonitor":
            want_ns = values.get("serviceMonitor", {}).get("namespace") or NAMESPACE
        elif "grafana_dashboard" in doc["metadata"].get("labels", {}):
            want_ns = values.get("grafanaDashboard", {}).get("namespace") or NAMESPACE
        assert doc["metadata"].get("namespace") == want_ns, (what, doc["metadata"], want_ns)
    return Rendered(release, docs)


# --------------------------------------------------------------------------
# Custom resources: kubernetes-validate ships only Kubernetes' own schemas,
# so the ServiceMonitor (monitoring.coreos.com/v1) is checked structurally
# against the prometheus-operator CRD's rules: required fields, known fields
# only (as strict validation would), types, enums and the duration pattern.
# --------------------------------------------------------------------------

PROM_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
SERVICE_MONITOR_SPEC_FIELDS = {
    "attachMetadata", "bodySizeLimit", "convertClassicHistogramsToNHCB", "endpoints",
    "fallbackScrapeProtocol", "jobLabel", "keepDroppedTargets", "labelLimit",
    "labelNameLengthLimit", "labelValueLengthLimit", "namespaceSelector",
    "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor", "podTargetLabels",
    "sampleLimit", "scrapeClass", "scrapeClassicHistograms", "scrapeNativeHistograms",
    "scrapeProtocols", "selector", "selectorMechanism", "serviceDiscoveryRole",
    "targetLabels", "targetLimit",
}
SERVICE_MONITOR_ENDPOINT_FIELDS = {
    "authorization", "basicAuth", "bearerTokenFile", "bearerTokenSecret", "enableHttp2",
    "filterRunning", "followRedirects", "honorLabels", "honorTimestamps", "interval",
    "metricRelabelings", "noProxy", "oauth2", "params", "path", "port", "proxyConnectHeader",
    "proxyFromEnvironment", "proxyUrl", "relabelings", "scheme", "scrapeTimeout",
    "targetPort", "tlsConfig", "trackTimestampsStaleness",
}
RELABEL_FIELDS = {"action", "modulus", "regex", "replacement", "separator", "sourceLabels", "targetLabel"}
RELABEL_ACTIONS = {
    a
    for lower, camel in [
        ("replace", "Replace"), ("keep", "Keep"), ("drop", "Drop"), ("hashmod", "HashMod"),
        ("labelmap", "LabelMap"), ("labeldrop", "LabelDrop"), ("labelkeep", "LabelKeep"),
        ("lowercase", "Lowercase"), ("uppercase", "Uppercase"), ("keepequal", "KeepEqual"),
        ("dropequal", "DropEqual"),
    ]
    for a in (lower, camel)
}


def _string_map(what: str, m, keys_are_labels: bool = True) -> None:
    assert isinstance(m, dict), f"{what} must be a map, is {m!r}"
    for k, v in m.items():
        assert isinstance(k, str) and isinstance(v, str), f"{what}: {k!r}: {v!r} must be strings"
        if keys_are_labels:
            assert LABEL_NAME.match(k) and len(k.split("/")[-1]) <= 63, f"{what}: bad label key {k!r}"


def _relabelings(what: str, rules) -> None:
    assert isinstance(rules, list), f"{what} must be a list"
    for r in rules:
        assert isinstance(r, dict) and set(r) <= RELABEL_FIELDS, f"{what}: unknown fields in {r}"
        assert r.get("action", "replace") in RELABEL_ACTIONS, f"{what}: action {r.get('action')!r}"
        if "sourceLabels" in r:
            assert isinstance(r["sourceLabels"], list) and all(isinstance(x, str) for x in r["sourceLabels"]), r
        for key in ("separator", "targetLabel", "regex", "replacement"):
            assert key not in r or isinstance(r[key], str), f"{what}: {key} must be a string: {r}"
        assert "modulus" not in r or isinstance(r["modulus"], int), r


def check_service_monitor(doc: dict) -> None:
    """A monitoring.coreos.com/v1 ServiceMonitor as the prometheus-operator
    CRD (v0.7x to v0.9x) accepts it."""
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, f"unknown top-level fields: {set(doc)}"
    meta = doc["metadata"]
    name = meta.get("name", "")
    assert DNS_SUBDOMAIN.match(name) and len(name) <= 253, f"ServiceMonitor name {name!r}"
    assert DNS_SUBDOMAIN.match(meta.get("namespace", "")), meta
    _string_map("metadata.labels", meta.get("labels", {}))
    for v in meta.get("labels", {}).values():
        assert len(v) <= 63, f"label value {v!r} longer than 63"
    _string_map("metadata.annotations", meta.get("annotations", {}), keys_are_labels=False)
    spec = doc["spec"]  # required
    assert isinstance(spec, dict) and set(spec) <= SERVICE_MONITOR_SPEC_FIELDS, f"unknown spec fields: {set(spec) - SERVICE_MONITOR_SPEC_FIELDS}"
    # spec.selector (required): a LabelSelector.
    selector = spec["selector"]
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    _string_map("spec.selector.matchLabels", selector.get("matchLabels", {}))
    assert selector.get("matchLabels") or selector.get("matchExpressions"), "an empty selector selects every Service"
    if "namespaceSelector" in spec:
        ns = spec["namespaceSelector"]
        assert set(ns) <= {"any", "matchNames"}, ns
        assert isinstance(ns.get("any", False), bool)
        assert all(isinstance(n, str) and DNS_SUBDOMAIN.match(n) for n in ns.get("matchNames", [])), ns
    # spec.endpoints (required since v0.8x): a non-empty list.
    endpoints = spec["endpoints"]
    assert isinstance(endpoints, list) and endpoints, "spec.endpoints must list at least one endpoint"
    for ep in endpoints:
        unknown = set(ep) - SERVICE_MONITOR_ENDPOINT_FIELDS
        assert not unknown, f"unknown endpoint fields: {unknown}"
        assert "port" in ep or "targetPort" in ep, f"endpoint without port or targetPort: {ep}"
        assert "port" not in ep or isinstance(ep["port"], str), f"endpoint port must be a Service port name: {ep}"
        assert ep.get("scheme", "http") in {"http", "https", "HTTP", "HTTPS"}, ep
        assert isinstance(ep.get("path", "/"), str) and ep.get("path", "/").startswith("/"), ep
        for key in ("interval", "scrapeTimeout"):
            if key in ep:
                assert isinstance(ep[key], str) and PROM_DURATION.match(ep[key]), f"endpoint {key} {ep[key]!r}"
        for key in ("honorLabels", "honorTimestamps", "enableHttp2", "followRedirects", "filterRunning"):
            assert key not in ep or isinstance(ep[key], bool), f"endpoint {key} must be a boolean: {ep[key]!r}"
        for key in ("relabelings", "metricRelabelings"):
            if key in ep:
                _relabelings(f"endpoint {key}", ep[key])


CUSTOM_RESOURCE_CHECKS = {("monitoring.coreos.com/v1", "ServiceMonitor"): check_service_monitor}


def render_fails(values: dict) -> str:
    """Installing with these values must fail; returns Helm's message."""
    try:
        render(values)
    except helm_sdkpy.HelmError as e:
        return str(e)
    raise AssertionError(f"install with {values} succeeded; it should have been refused")


def fullname(r: Rendered) -> str:
    return f"{r.release}-angzarr-bus"


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_lint_passes():
    result = asyncio.run(helm_sdkpy.Lint(CONFIG).run(str(CHART)))
    assert result["TotalChartsLinted"] == 1, result
    assert not result.get("Errors"), result
    # Severity: 0 unknown, 1 info, 2 warning, 3 error. Infos allowed (e.g. no icon).
    bad = [m for m in result.get("Messages") or [] if m["Severity"] >= 2]
    assert not bad, f"lint warnings/errors: {bad}"


def test_lint_catches_a_broken_chart():
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / "angzarr-bus"
        shutil.copytree(CHART, broken)
        t = broken / "templates" / "configmap.yaml"
        t.write_text(t.read_text() + "\n{{- if .Values.bus.backend }}\n")  # unclosed action
        result = asyncio.run(helm_sdkpy.Lint(CONFIG).run(str(broken)))
    errors = [m for m in result.get("Messages") or [] if m["Severity"] >= 3]
    assert errors or result.get("Errors"), f"lint accepted a broken template: {result}"


def test_bundled_server_defaults():
    r = render()
    name = fullname(r)
    assert r.kinds() == ["ConfigMap", "Deployment", "Service", "Service", "StatefulSet"], r.kinds()

    # StatefulSet: the bundled server with JetStream on a volume.
    sts = r.one("StatefulSet")
    assert sts["metadata"]["name"] == f"{name}-server"
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == f"{name}-server-headless"
    c = r.server_container()
    assert c["image"] == "angzarr/bus:0.1.0", c["image"]
    assert c["command"] == ["/usr/local/bin/angzarr-nats-server"]
    args = c["args"]
    for flag, value in (("-a", "0.0.0.0"), ("-p", "4222"), ("-m", "8222"), ("-sd", "/data"), ("-n", "$(POD_NAME)")):
        assert flag in args and args[args.index(flag) + 1] == value, (flag, args)
    assert "-js" in args, args
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"client": 4222, "monitor": 8222}, ports
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz", (probe, get)
        assert ports[get["port"]] == 8222, (probe, get)
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    pod = sts["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert "volumes" not in pod, "persistence on: /data comes from the volumeClaimTemplate"
    (vct,) = sts["spec"]["volumeClaimTemplates"]
    assert vct["metadata"]["name"] == "data"
    assert vct["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert vct["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in vct["spec"], "empty storageClass uses the cluster default"
    req, lim = PRESETS["small"]
    assert c["resources"] == {"requests": req, "limits": lim}, c["resources"]

    # Services: headless for the pods, client for the app; both select the server pods.
    headless = r.one("Service", "-server-headless")
    client = r.one("Service", "-server")
    assert headless["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in client["spec"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    for svc in (headless, client):
        assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), svc["spec"]["selector"]
        assert {(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
            ("client", 4222, "client"),
            ("monitor", 8222, "monitor"),
        }
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    # The app points at the client Service.
    url = f"nats://{name}-server.{NAMESPACE}.svc:4222"
    env = r.app_env()
    assert env["BUS_BACKEND"] == "nats", env
    assert env["NATS_URL"] == url, env
    app = r.app_container()
    assert app["image"] == "angzarr/bus:0.1.0"
    req, lim = PRESETS["micro"]
    assert app["resources"] == {"requests": req, "limits": lim}, app["resources"]
    assert {"name": "bus-config", "mountPath": "/etc/angzarr", "readOnly": True} in app["volumeMounts"]
    dep = r.one("Deployment")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["bus-config"]["configMap"]["name"] == f"{name}-config"
    assert "--config" in app["args"] and app["args"][app["args"].index("--config") + 1] == "/etc/angzarr/bus.toml"
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True

    # The TOML.
    bus = r.bus_toml()["bus"]
    assert bus["backend"] == "nats"
    assert bus["subject_prefix"] == "angzarr"
    assert bus["nats"]["url"] == url
    assert bus["nats"]["jetstream"] is True
    assert bus["nats"]["stream_name"] == "angzarr-events"
    assert bus["nats"]["connect_timeout"] == "5s" and bus["nats"]["publish_retries"] == 2
    assert bus["stream"] == {
        "max_msgs": 0,
        "max_bytes": 0,
        "max_age": "7d",
        "max_msg_size": 1048576,
        "duplicate_window": "2m",
        "discard": "old",
        "storage": "file",
        "replicas": 1,
    }, bus["stream"]
    assert bus["consumer"] == {
        "ack_wait": "30s",
        "max_deliver": 5,
        "backoff": ["1s", "5s", "30s"],
        "max_ack_pending": 1000,
    }, bus["consumer"]
    assert "memory" not in bus and "embedded" not in bus


def test_bundled_server_overrides():
    r = render(
        {
            "bus": {
                "subjectPrefix": "shop",
                "nats": {"jetstream": False, "streamName": "orders", "clientName": "poker-k8s"},
                "stream": {"maxAge": "30d", "maxBytes": 10737418240, "storage": "memory"},
                "consumer": {"backoff": [], "maxAckPending": 1},
            },
            "server": {
                "image": {"repository": "registry.local/angzarr", "tag": "dev"},
                "persistence": {"size": "50Gi", "storageClass": "fast-ssd"},
                "resourcesPreset": "large",
                "terminationGracePeriodSeconds": 120,
                "extraArgs": ["-D"],
            },
            "app": {"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}, "resourcesPreset": "nano"},
        }
    )
    c = r.server_container()
    assert c["image"] == "registry.local/angzarr:dev"
    assert c["args"][-1] == "-D"
    sts = r.one("StatefulSet")
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
    (vct,) = sts["spec"]["volumeClaimTemplates"]
    assert vct["spec"]["storageClassName"] == "fast-ssd"
    assert vct["spec"]["resources"]["requests"]["storage"] == "50Gi"
    req, lim = PRESETS["large"]
    assert c["resources"] == {"requests": req, "limits": lim}
    # Explicit resources replace the preset entirely.
    assert r.app_container()["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}}
    bus = r.bus_toml()["bus"]
    assert bus["subject_prefix"] == "shop"
    assert bus["nats"]["jetstream"] is False
    assert bus["nats"]["stream_name"] == "orders"
    assert bus["nats"]["client_name"] == "poker-k8s"
    assert bus["stream"]["max_age"] == "30d"
    assert bus["stream"]["max_bytes"] == 10737418240
    assert bus["stream"]["storage"] == "memory"
    assert bus["consumer"]["backoff"] == [] and bus["consumer"]["max_ack_pending"] == 1


def test_bundled_server_without_persistence():
    r = render({"server": {"persistence": {"enabled": False}, "resourcesPreset": "none"}})
    sts = r.one("StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"] == {"name": "data", "emptyDir": {}}
    assert "resources" not in r.server_container()
    r = render({"server": {"persistence": {"storageClass": "-"}}})
    (vct,) = r.one("StatefulSet")["spec"]["volumeClaimTemplates"]
    assert vct["spec"]["storageClassName"] == "", vct["spec"]


def test_existing_nats():
    url = "nats://nats-0.nats:4222,nats://nats-1.nats:4222"
    r = render({"bus": {"nats": {"enabled": False, "url": url, "streamName": "poker-events", "jetstream": True}}})
    assert r.kinds() == ["ConfigMap", "Deployment"], r.kinds()
    assert not r.all("StatefulSet") and not r.all("Service")
    env = r.app_env()
    assert env["BUS_BACKEND"] == "nats" and env["NATS_URL"] == url, env
    bus = r.bus_toml()["bus"]
    assert bus["backend"] == "nats"
    assert bus["nats"]["url"] == url
    assert bus["nats"]["stream_name"] == "poker-events"
    assert bus["nats"]["jetstream"] is True


def test_existing_nats_requires_url():
    msg = render_fails({"bus": {"nats": {"enabled": False, "url": ""}}})
    assert "bus.nats.url is required" in msg, msg
    msg = render_fails({"bus": {"nats": {"enabled": False, "url": "http://nats:4222"}}})
    assert "not a nats://" in msg, msg


def test_memory_backend():
    # bus.nats.enabled stays true (the default): memory deploys no server anyway.
    r = render({"bus": {"backend": "memory", "memory": {"subscriberBuffer": 128}}, "app": {"kind": "Job"}})
    assert r.kinds() == ["ConfigMap", "Job"], r.kinds()
    env = r.app_env()
    assert env["BUS_BACKEND"] == "memory", env
    assert "NATS_URL" not in env, env
    job = r.one("Job")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert r.app_container()["command"] == ["/usr/local/bin/poker"]
    bus = r.bus_toml()["bus"]
    assert bus["backend"] == "memory"
    assert "nats" not in bus, bus
    assert bus["memory"] == {"subscriber_buffer": 128}


def test_embedded_backend():
    r = render({"bus": {"backend": "embedded"}})
    assert r.kinds() == ["ConfigMap", "Deployment"], r.kinds()
    env = r.app_env()
    assert env["BUS_BACKEND"] == "embedded" and "NATS_URL" not in env, env
    bus = r.bus_toml()["bus"]
    assert bus["backend"] == "embedded"
    assert bus["embedded"]["data_dir"] == "/var/lib/angzarr/data"
    assert bus["embedded"]["host"] == "127.0.0.1"
    mounts = {m["name"]: m["mountPath"] for m in r.app_container()["volumeMounts"]}
    assert mounts["embedded-data"] == "/var/lib/angzarr/data"


def test_app_disabled_deploys_only_the_server():
    r = render({"app": {"enabled": False}})
    assert r.kinds() == ["ConfigMap", "Service", "Service", "StatefulSet"], r.kinds()


def test_deployment_idles_after_a_successful_run():
    r = render({"app": {"args": ["--hands", "10"]}})
    c = r.app_container()
    assert c["command"] == ["/bin/sh", "-c"]
    script, argv0, *rest = c["args"]
    assert '/usr/local/bin/poker "$@"' in script and "exit" in script and "sleep infinity" in script
    assert rest == ["--config", "/etc/angzarr/bus.toml", "--hands", "10"], rest
    r = render({"app": {"idleAfterRun": False}})
    c = r.app_container()
    assert c["command"] == ["/usr/local/bin/poker"]
    assert c["args"][:2] == ["--config", "/etc/angzarr/bus.toml"]


def test_every_preset():
    for preset, (req, lim) in PRESETS.items():
        r = render({"server": {"resourcesPreset": preset}, "app": {"resourcesPreset": preset}})
        for c in (r.server_container(), r.app_container()):
            assert c["resources"] == {"requests": req, "limits": lim}, (preset, c["name"], c["resources"])


def test_bad_values_are_refused():
    msg = render_fails({"bus": {"backend": "kafka"}})
    assert "backend" in msg, msg
    msg = render_fails({"server": {"resourcesPreset": "huge"}})
    assert "resourcesPreset" in msg, msg
    msg = render_fails({"app": {"kind": "CronJob"}})
    assert "kind" in msg, msg


def test_config_changes_roll_the_app():
    a = render()
    b = render({"bus": {"nats": {"streamName": "other"}}})
    ann = lambda r: r.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]  # noqa: E731
    assert ann(a) != ann(b)


def secret_ref(container: dict, var: str) -> dict:
    """The secretKeyRef of env var `var` (which must carry no literal value)."""
    (entry,) = [e for e in container.get("env", []) if e["name"] == var]
    assert "value" not in entry, f"{var} carries a literal value: {entry}"
    return entry["valueFrom"]["secretKeyRef"]


def volumes_of(workload: dict) -> dict:
    return {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}


def mounts_of(container: dict) -> dict:
    return {m["name"]: m for m in container.get("volumeMounts", [])}


def test_auth_password_with_bundled_server():
    r = render({"bus": {"nats": {"auth": {"existingSecret": "bus-creds"}}}})
    name = fullname(r)
    assert r.kinds() == ["ConfigMap", "ConfigMap", "Deployment", "Service", "Service", "StatefulSet"], r.kinds()
    # The app: credentials from the Secret, nothing secret in bus.toml.
    app = r.app_container()
    assert secret_ref(app, "NATS_USER") == {"name": "bus-creds", "key": "user"}
    assert secret_ref(app, "NATS_PASSWORD") == {"name": "bus-creds", "key": "password"}
    assert "NATS_TOKEN" not in r.app_env() and "NATS_CREDS" not in r.app_env()
    nats = r.bus_toml()["bus"]["nats"]
    for key in ("user", "password", "token", "credentials_file"):
        assert key not in nats, (key, nats)
    # The server: a config file with an authorization block reading $NATS_*,
    # which come from the same Secret.
    conf = r.one("ConfigMap", "-server-config")
    assert conf["metadata"]["name"] == f"{name}-server-config"
    text = conf["data"]["server.conf"]
    assert "authorization {" in text and "user: $NATS_USER" in text and "password: $NATS_PASSWORD" in text, text
    c = r.server_container()
    args = c["args"]
    assert "-c" in args and args[args.index("-c") + 1] == "/etc/nats/server.conf", args
    assert "--tls" not in args, args
    assert secret_ref(c, "NATS_USER") == {"name": "bus-creds", "key": "user"}
    assert secret_ref(c, "NATS_PASSWORD") == {"name": "bus-creds", "key": "password"}
    assert mounts_of(c)["server-config"]["mountPath"] == "/etc/nats"
    sts = r.one("StatefulSet")
    vol = volumes_of(sts)["server-config"]
    assert vol["configMap"]["name"] == f"{name}-server-config", vol
    assert vol["configMap"]["items"] == [{"key": "server.conf", "path": "server.conf"}]
    assert "checksum/server-config" in sts["spec"]["template"]["metadata"]["annotations"]
    # Persistence stays on the volumeClaimTemplate.
    assert "data" not in volumes_of(sts) and sts["spec"]["volumeClaimTemplates"]


def test_auth_token_with_custom_key():
    r = render({"bus": {"nats": {"auth": {"existingSecret": "tok", "type": "token", "tokenKey": "nats-token"}}}})
    app = r.app_container()
    assert secret_ref(app, "NATS_TOKEN") == {"name": "tok", "key": "nats-token"}
    assert "NATS_USER" not in r.app_env() and "NATS_PASSWORD" not in r.app_env()
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    assert "token: $NATS_TOKEN" in text and "NATS_PASSWORD" not in text, text
    assert secret_ref(r.server_container(), "NATS_TOKEN") == {"name": "tok", "key": "nats-token"}


def test_auth_creds_with_existing_nats():
    url = "tls://connect.ngs.global:4222"
    r = render(
        {
            "bus": {
                "nats": {
                    "enabled": False,
                    "url": url,
                    "auth": {"existingSecret": "ngs", "type": "creds", "credsKey": "app.creds"},
                }
            }
        }
    )
    assert r.kinds() == ["ConfigMap", "Deployment"], r.kinds()
    app = r.app_container()
    env = r.app_env()
    assert env["NATS_CREDS"] == "/etc/angzarr-creds/nats.creds", env
    assert "NATS_USER" not in env and "NATS_TOKEN" not in env, env
    assert mounts_of(app)["nats-creds"] == {"name": "nats-creds", "mountPath": "/etc/angzarr-creds", "readOnly": True}
    vol = volumes_of(r.one("Deployment"))["nats-creds"]
    assert vol["secret"]["secretName"] == "ngs"
    assert vol["secret"]["items"] == [{"key": "app.creds", "path": "nats.creds"}]
    # The bundled server has no JWT authentication: creds with it is refused.
    msg = render_fails({"bus": {"nats": {"auth": {"existingSecret": "ngs", "type": "creds"}}}})
    assert "creds" in msg, msg


OP_SYS = "A" + "B" * 55
OP_APP = "A" + "C" * 55
OP_JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJ4In0.c2ln"


def test_operator_mode_with_bundled_server_takes_the_operator_jwt_from_a_secret():
    r = render(
        {
            "bus": {"nats": {"auth": {"existingSecret": "app-creds", "type": "creds"}}},
            "server": {
                "operator": {
                    "existingSecret": "nats-operator",
                    "operatorKey": "op.jwt",
                    "systemAccount": OP_SYS,
                    "preload": {OP_SYS: OP_JWT, OP_APP: OP_JWT},
                }
            },
        }
    )
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    assert 'operator: "/etc/nats-operator/operator.jwt"' in text, text
    assert f'system_account: "{OP_SYS}"' in text, text
    assert "type: full" in text and 'dir: "/data/jwt"' in text, text
    assert f'{OP_APP}: "{OP_JWT}"' in text and f'{OP_SYS}: "{OP_JWT}"' in text, text
    assert "authorization" not in text, "operator mode has no authorization block"
    sts = r.one("StatefulSet")
    c = r.server_container()
    assert mounts_of(c)["nats-operator"] == {"name": "nats-operator", "mountPath": "/etc/nats-operator", "readOnly": True}
    vol = volumes_of(sts)["nats-operator"]
    assert vol["secret"] == {"secretName": "nats-operator", "items": [{"key": "op.jwt", "path": "operator.jwt"}]}, vol
    args = c["args"]
    assert args[args.index("-c") + 1] == "/etc/nats/server.conf", args
    # The JWT directory is on the data volume, beside (not inside) the store.
    assert mounts_of(c)["data"]["mountPath"] == "/data"
    # The app connects with its .creds file from its own Secret.
    env = r.app_env()
    assert env["NATS_CREDS"] == "/etc/angzarr-creds/nats.creds", env
    assert volumes_of(r.one("Deployment"))["nats-creds"]["secret"]["secretName"] == "app-creds"


def test_operator_mode_without_preload_or_system_account_renders_only_what_is_set():
    r = render(
        {
            "bus": {"nats": {"auth": {"existingSecret": "app-creds", "type": "creds"}}},
            "server": {"operator": {"existingSecret": "nats-operator"}},
        }
    )
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    assert "system_account" not in text and "resolver_preload" not in text, text
    vol = volumes_of(r.one("StatefulSet"))["nats-operator"]
    assert vol["secret"]["items"] == [{"key": "operator.jwt", "path": "operator.jwt"}], vol


def test_operator_mode_values_that_cannot_be_honoured_are_refused():
    op = {"existingSecret": "nats-operator"}
    # The app could not connect: no credentials, or a kind the server refuses.
    msg = render_fails({"server": {"operator": op}})
    assert "bus.nats.auth.type=creds" in msg, msg
    msg = render_fails({"bus": {"nats": {"auth": {"existingSecret": "pw"}}}, "server": {"operator": op}})
    assert "bus.nats.auth.type is password" in msg and "creds" in msg, msg
    # Operator mode for a server that is not deployed.
    msg = render_fails(
        {
            "bus": {"nats": {"enabled": False, "url": "nats://n:4222", "auth": {"existingSecret": "c", "type": "creds"}}},
            "server": {"operator": op},
        }
    )
    assert "server.operator.existingSecret" in msg and "not deployed" in msg, msg
    # Preload or a system account without the operator JWT would do nothing.
    msg = render_fails({"server": {"operator": {"systemAccount": OP_SYS}}})
    assert "operator mode is off" in msg, msg
    # Keys that are not account public keys / JWTs fail the schema.
    msg = render_fails(
        {
            "bus": {"nats": {"auth": {"existingSecret": "c", "type": "creds"}}},
            "server": {"operator": {"existingSecret": "s", "preload": {"not-a-key": OP_JWT}}},
        }
    )
    assert "not-a-key" in msg and "does not match" in msg, msg


def test_tls_with_bundled_server():
    r = render({"bus": {"nats": {"tls": {"existingSecret": "bus-tls"}}}})
    # The app: the Secret mounted, bus.toml pointing there.
    app = r.app_container()
    assert mounts_of(app)["nats-tls"] == {"name": "nats-tls", "mountPath": "/etc/angzarr-tls", "readOnly": True}
    vol = volumes_of(r.one("Deployment"))["nats-tls"]["secret"]
    assert vol["secretName"] == "bus-tls"
    assert vol["items"] == [
        {"key": "ca.crt", "path": "ca.crt"},
        {"key": "tls.crt", "path": "tls.crt"},
        {"key": "tls.key", "path": "tls.key"},
    ], vol["items"]
    nats = r.bus_toml()["bus"]["nats"]
    assert nats["tls_required"] is True
    assert nats["tls_ca_file"] == "/etc/angzarr-tls/ca.crt"
    assert nats["tls_cert_file"] == "/etc/angzarr-tls/tls.crt"
    assert nats["tls_key_file"] == "/etc/angzarr-tls/tls.key"
    # The server: the same Secret mounted and TLS flags, no client verification.
    c = r.server_container()
    args = c["args"]
    assert "--tls" in args, args
    assert args[args.index("--tlscert") + 1] == "/etc/nats-tls/tls.crt", args
    assert args[args.index("--tlskey") + 1] == "/etc/nats-tls/tls.key", args
    assert "--tlsverify" not in args and "-c" not in args, args
    assert mounts_of(c)["nats-tls"]["mountPath"] == "/etc/nats-tls"
    assert volumes_of(r.one("StatefulSet"))["nats-tls"]["secret"]["secretName"] == "bus-tls"
    assert not r.all("ConfigMap")[1:], "no server config file without auth"


def test_tls_mutual_and_custom_keys():
    r = render(
        {
            "bus": {
                "nats": {
                    "tls": {"existingSecret": "mtls", "caKey": "root.pem", "certKey": "c.pem", "keyKey": "k.pem", "verifyClients": True},
                    "auth": {"existingSecret": "bus-creds"},
                }
            }
        }
    )
    args = r.server_container()["args"]
    assert args[args.index("--tlscacert") + 1] == "/etc/nats-tls/ca.crt" and "--tlsverify" in args, args
    assert "-c" in args, args
    items = volumes_of(r.one("StatefulSet"))["nats-tls"]["secret"]["items"]
    assert [(i["key"], i["path"]) for i in items] == [("root.pem", "ca.crt"), ("c.pem", "tls.crt"), ("k.pem", "tls.key")]
    assert secret_ref(r.app_container(), "NATS_PASSWORD")["name"] == "bus-creds"
    # Without the client certificate the app only trusts the CA.
    r = render({"bus": {"nats": {"enabled": False, "url": "nats://nats:4222", "tls": {"existingSecret": "t", "clientCert": False}}}})
    nats = r.bus_toml()["bus"]["nats"]
    assert nats["tls_required"] is True and nats["tls_ca_file"] == "/etc/angzarr-tls/ca.crt"
    assert "tls_cert_file" not in nats and "tls_key_file" not in nats, nats


def test_auth_and_tls_ignored_without_nats_backend():
    values = {"auth": {"existingSecret": "c"}, "tls": {"existingSecret": "t"}}
    for backend in ("memory", "embedded"):
        r = render({"bus": {"backend": backend, "nats": values}})
        env = r.app_env()
        assert not {"NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS"} & env.keys(), (backend, env)
        assert "nats-tls" not in mounts_of(r.app_container()), backend


def test_bad_auth_values_are_refused():
    msg = render_fails({"bus": {"nats": {"auth": {"existingSecret": "c", "type": "kerberos"}}}})
    assert "type" in msg, msg


# --------------------------------------------------------------------------
# The values of the Angzarr documentation, and what cannot be honoured
# --------------------------------------------------------------------------

# Verbatim from the Angzarr documentation (issue #16): `enabled: true` with a
# `url` must mean "use the NATS at that URL", not "deploy the bundled server".
DOCUMENTED_VALUES = """
bus:
  backend: nats
  nats:
    enabled: true
    url: nats://nats.messaging.svc.cluster.local:4222
    jetstream: true
    streamName: angzarr-events
"""
DOCUMENTED_URL = "nats://nats.messaging.svc.cluster.local:4222"


def test_documented_angzarr_values_use_their_url():
    r = render(yaml.safe_load(DOCUMENTED_VALUES))
    assert not r.all("StatefulSet"), "the documented values must not deploy the bundled server"
    assert not r.all("Service"), r.kinds()
    assert r.kinds() == ["ConfigMap", "Deployment"], r.kinds()
    env = r.app_env()
    assert env["BUS_BACKEND"] == "nats", env
    assert env["NATS_URL"] == DOCUMENTED_URL, env
    nats = r.bus_toml()["bus"]["nats"]
    assert nats["url"] == DOCUMENTED_URL, nats
    assert nats["jetstream"] is True and nats["stream_name"] == "angzarr-events", nats
    # The chart's own spelling (enabled: false + url) means the same.
    r2 = render({"bus": {"nats": {"enabled": False, "url": DOCUMENTED_URL}}})
    assert r2.kinds() == ["ConfigMap", "Deployment"] and r2.app_env()["NATS_URL"] == DOCUMENTED_URL
    # And without a url, enabled: true is the bundled server.
    r3 = render({"bus": {"backend": "nats", "nats": {"enabled": True, "url": ""}}})
    assert len(r3.all("StatefulSet")) == 1, r3.kinds()
    assert r3.app_env()["NATS_URL"] == f"nats://{fullname(r3)}-server.{NAMESPACE}.svc:4222"


def test_combinations_that_cannot_be_honoured_are_refused_with_what_to_change():
    # No URL and not the bundled server.
    msg = render_fails({"bus": {"nats": {"enabled": False}}})
    assert "bus.nats.url is required" in msg and "bus.nats.enabled=true" in msg, msg
    # A URL the backend would not use.
    for backend in ("memory", "embedded"):
        msg = render_fails({"bus": {"backend": backend, "nats": {"url": DOCUMENTED_URL}}})
        assert f"bus.backend is {backend}" in msg and "bus.backend=nats" in msg and "remove bus.nats.url" in msg, msg
    # JetStream wanted, bundled server without it.
    msg = render_fails({"server": {"jetstream": False}})
    assert "server.jetstream=true" in msg and "bus.nats.jetstream=false" in msg, msg
    r = render({"server": {"jetstream": False}, "bus": {"nats": {"jetstream": False}}})
    assert "-js" not in r.server_container()["args"]
    # Replicas on a single-node server; fine on an existing cluster.
    msg = render_fails({"bus": {"stream": {"replicas": 3}}})
    assert "bus.stream.replicas=1" in msg and "bundled" in msg, msg
    msg = render_fails({"bus": {"backend": "embedded", "stream": {"replicas": 3}}})
    assert "bus.stream.replicas=1" in msg and "embedded" in msg, msg
    r = render({"bus": {"nats": {"url": DOCUMENTED_URL}, "stream": {"replicas": 3}}})
    assert r.bus_toml()["bus"]["stream"]["replicas"] == 3
    # Monitoring of a server this release does not run.
    for what, values in [
        ("serviceMonitor.enabled", {"serviceMonitor": {"enabled": True}}),
        ("grafanaDashboard.enabled", {"grafanaDashboard": {"enabled": True}}),
    ]:
        msg = render_fails({**values, "bus": {"nats": {"url": DOCUMENTED_URL}}})
        assert f"{what}=false" in msg and "bus.nats.url is set" in msg, msg
        msg = render_fails({**values, "bus": {"backend": "memory"}})
        assert f"{what}=false" in msg and "bus.backend is memory" in msg, msg
    msg = render_fails({"serviceMonitor": {"enabled": True, "interval": "10s", "scrapeTimeout": "1m"}})
    assert "serviceMonitor.scrapeTimeout" in msg and "serviceMonitor.interval" in msg, msg
    # The schema catches malformed or misspelt monitoring values.
    msg = render_fails({"serviceMonitor": {"enabled": True, "interval": "30 seconds"}})
    assert "interval" in msg, msg
    msg = render_fails({"serviceMonitor": {"enabled": True, "intervall": "30s"}})
    assert "intervall" in msg, msg
    msg = render_fails({"grafanaDashboard": {"enabled": True, "labels": {"grafana_dashboard": 1}}})
    assert "grafana_dashboard" in msg, msg


# --------------------------------------------------------------------------
# WebSocket listener
# --------------------------------------------------------------------------


def ports_of(doc: dict) -> dict:
    return {p["name"]: p for p in doc["spec"]["ports"]}


def test_websocket_is_off_by_default():
    r = render()
    for svc in r.all("Service"):
        assert "websocket" not in ports_of(svc), svc["metadata"]["name"]
    c = r.server_container()
    assert "websocket" not in {p["name"] for p in c["ports"]}
    assert "-c" not in c["args"], "no config file without auth or websocket"


def test_websocket_plain_opens_a_port_on_both_services_and_the_config_file():
    r = render(
        {
            "server": {
                "websocket": {
                    "enabled": True,
                    "port": 9443,
                    "noTls": True,
                    "sameOrigin": True,
                    "allowedOrigins": ["https://app.example.com", "http://localhost:3000"],
                    "handshakeTimeout": "5s",
                    "compression": True,
                }
            }
        }
    )
    name = fullname(r)
    for svc in r.all("Service"):
        ws = ports_of(svc)["websocket"]
        assert ws == {"name": "websocket", "port": 9443, "targetPort": "websocket", "protocol": "TCP"}, ws
    c = r.server_container()
    assert {"name": "websocket", "containerPort": 9443, "protocol": "TCP"} in c["ports"], c["ports"]
    args = c["args"]
    assert args[args.index("-c") + 1] == "/etc/nats/server.conf", args
    assert mounts_of(c)["server-config"]["mountPath"] == "/etc/nats"
    sts = r.one("StatefulSet")
    assert volumes_of(sts)["server-config"]["configMap"]["name"] == f"{name}-server-config"
    assert "checksum/server-config" in sts["spec"]["template"]["metadata"]["annotations"]
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    assert "authorization" not in text, text
    for line in (
        "websocket {",
        "port: 9443",
        "no_tls: true",
        "same_origin: true",
        'allowed_origins: ["https://app.example.com", "http://localhost:3000"]',
        'handshake_timeout: "5s"',
        "compression: true",
    ):
        assert line in text, (line, text)
    assert "tls {" not in text, text


def test_websocket_with_tls_and_auth_share_the_config_file():
    r = render(
        {
            "bus": {"nats": {"tls": {"existingSecret": "bus-tls"}, "auth": {"existingSecret": "bus-creds"}}},
            "server": {"websocket": {"enabled": True}},
        }
    )
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    assert "authorization {" in text and "user: $NATS_USER" in text, text
    assert "port: 8080" in text and "no_tls" not in text, text
    assert "compression" not in text, text
    assert 'cert_file: "/etc/nats-tls/tls.crt"' in text and 'key_file: "/etc/nats-tls/tls.key"' in text, text
    c = r.server_container()
    assert mounts_of(c)["nats-tls"]["mountPath"] == "/etc/nats-tls"
    assert ports_of(r.one("Service", "-server"))["websocket"]["port"] == 8080


def test_websocket_values_that_cannot_be_honoured_are_refused():
    msg = render_fails({"server": {"websocket": {"enabled": True}}})
    assert "bus.nats.tls.existingSecret" in msg and "server.websocket.noTls=true" in msg, msg
    msg = render_fails({"server": {"websocket": {"enabled": True, "noTls": True, "port": 4222}}})
    assert "server.clientPort" in msg, msg
    msg = render_fails({"server": {"websocket": {"enabled": True, "noTls": True, "port": 8222}}})
    assert "server.monitorPort" in msg, msg
    # The schema: a misspelt key, an origin that is no URL, a bad duration.
    for bad, key in [
        ({"enable": True}, "enable"),
        ({"allowedOrigins": ["app.example.com"]}, "allowedOrigins"),
        ({"handshakeTimeout": "5 seconds"}, "handshakeTimeout"),
    ]:
        msg = render_fails({"server": {"websocket": bad}})
        assert key in msg, (bad, msg)
    # Not deployed without the bundled server: nothing to open.
    r = render({"bus": {"nats": {"url": DOCUMENTED_URL}}, "server": {"websocket": {"enabled": True}}})
    assert not r.all("StatefulSet") and not r.all("Service"), r.kinds()


def test_mqtt_is_off_by_default():
    r = render()
    for svc in r.all("Service"):
        assert "mqtt" not in ports_of(svc), svc["metadata"]["name"]
    assert "mqtt" not in {p["name"] for p in r.server_container()["ports"]}


def test_mqtt_opens_a_port_on_both_services_and_the_config_file():
    r = render({"server": {"mqtt": {"enabled": True, "port": 1884}}})
    for svc in r.all("Service"):
        mq = ports_of(svc)["mqtt"]
        assert mq == {"name": "mqtt", "port": 1884, "targetPort": "mqtt", "protocol": "TCP"}, mq
    c = r.server_container()
    assert {"name": "mqtt", "containerPort": 1884, "protocol": "TCP"} in c["ports"], c["ports"]
    args = c["args"]
    assert args[args.index("-c") + 1] == "/etc/nats/server.conf", args
    # The server needs a server name and JetStream for MQTT.
    assert "-n" in args and "-js" in args, args
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    assert "mqtt {" in text and "port: 1884" in text, text
    assert "websocket {" not in text and "authorization {" not in text, text


def test_mqtt_qos1_settings_reach_the_config_file_only_when_set():
    r = render({"server": {"mqtt": {"enabled": True}}})
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    assert "ack_wait" not in text and "max_ack_pending" not in text, text
    r = render({"server": {"mqtt": {"enabled": True, "ackWait": "10s", "maxAckPending": 50}}})
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    assert 'ack_wait: "10s"' in text and "max_ack_pending: 50" in text, text
    msg = render_fails({"server": {"mqtt": {"enabled": True, "maxAckPending": 70000}}})
    assert "maxAckPending" in msg, msg


def test_mqtt_tls_uses_the_server_certificate_secret():
    r = render({"server": {"mqtt": {"enabled": True}}})
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    assert "tls {" not in text, text
    r = render({"server": {"mqtt": {"enabled": True, "tls": True}}, "bus": {"nats": {"tls": {"existingSecret": "srv-tls"}}}})
    text = r.one("ConfigMap", "-server-config")["data"]["server.conf"]
    mqtt = text[text.index("mqtt {"):]
    assert 'cert_file: "/etc/nats-tls/tls.crt"' in mqtt and 'key_file: "/etc/nats-tls/tls.key"' in mqtt, text
    c = r.server_container()
    assert {"name": "nats-tls", "mountPath": "/etc/nats-tls", "readOnly": True} in c["volumeMounts"], c["volumeMounts"]
    msg = render_fails({"server": {"mqtt": {"enabled": True, "tls": True}}})
    assert "server.mqtt.tls" in msg and "bus.nats.tls.existingSecret" in msg, msg


def test_mqtt_values_that_cannot_be_honoured_are_refused():
    msg = render_fails({"server": {"jetstream": False, "mqtt": {"enabled": True}}, "bus": {"nats": {"jetstream": False}}})
    assert "server.jetstream" in msg, msg
    for port in (4222, 8222):
        msg = render_fails({"server": {"mqtt": {"enabled": True, "port": port}}})
        assert "server.mqtt.port" in msg, msg
    msg = render_fails({"server": {"mqtt": {"enabled": True, "port": 8080}, "websocket": {"enabled": True, "noTls": True}}})
    assert "server.mqtt.port" in msg, msg
    msg = render_fails({"server": {"mqtt": {"enable": True}}})
    assert "enable" in msg, msg


# --------------------------------------------------------------------------
# Prometheus and Grafana
# --------------------------------------------------------------------------

DASHBOARD_FILE = CHART / "dashboards" / "angzarr-bus.json"


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_monitoring_is_off_by_default():
    r = render()
    assert not r.all("ServiceMonitor"), r.kinds()
    assert not [d for d in r.all("ConfigMap") if "grafana_dashboard" in d["metadata"].get("labels", {})]


def test_service_monitor_scrapes_the_bundled_servers_metrics():
    relabel = [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}]
    drop = [{"sourceLabels": ["__name__"], "regex": "nats_varz_cpu", "action": "drop"}]
    r = render(
        {
            "serviceMonitor": {
                "enabled": True,
                "labels": {"release": "kube-prometheus-stack"},
                "annotations": {"team": "bus"},
                "interval": "15s",
                "scrapeTimeout": "10s",
                "honorLabels": True,
                "relabelings": relabel,
                "metricRelabelings": drop,
            },
            "server": {"monitorPort": 9333},
        }
    )
    sm = r.one("ServiceMonitor")  # check_service_monitor passed in render()
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["name"] == f"{fullname(r)}-server"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack", sm["metadata"]["labels"]
    assert sm["metadata"]["labels"]["app.kubernetes.io/instance"] == r.release
    assert sm["metadata"]["annotations"] == {"team": "bus"}
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # It selects exactly one Service, the headless one (every pod, ready or
    # not; selecting the client Service as well would scrape the pod twice).
    services = [s for s in r.all("Service") if selects(sm["spec"]["selector"], s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in services] == [f"{fullname(r)}-server-headless"], services
    (svc,) = services
    assert svc["spec"].get("publishNotReadyAddresses") is True
    (ep,) = sm["spec"]["endpoints"]
    assert ep["path"] == "/metrics" and ep["scheme"] == "http", ep
    assert ep["interval"] == "15s" and ep["scrapeTimeout"] == "10s" and ep["honorLabels"] is True, ep
    assert ep["relabelings"] == relabel and ep["metricRelabelings"] == drop, ep
    # The named Service port leads to the container port the server serves
    # monitoring on (-m).
    (port,) = [p for p in svc["spec"]["ports"] if p["name"] == ep["port"]]
    assert port["port"] == 9333, port
    c = r.server_container()
    (cport,) = [p for p in c["ports"] if p["name"] == port["targetPort"]]
    args = c["args"]
    assert cport["containerPort"] == 9333 and args[args.index("-m") + 1] == "9333", (cport, args)
    pod_labels = r.one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items(), (svc["spec"]["selector"], pod_labels)


def test_service_monitor_defaults_and_namespace():
    r = render({"serviceMonitor": {"enabled": True, "namespace": "monitoring"}})
    sm = r.one("ServiceMonitor")
    assert sm["metadata"]["namespace"] == "monitoring"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}, "the Service stays in the release's namespace"
    (ep,) = sm["spec"]["endpoints"]
    assert ep == {"port": "monitor", "path": "/metrics", "scheme": "http", "interval": "30s", "honorLabels": False}, ep
    r = render({"serviceMonitor": {"enabled": True, "interval": ""}})
    (ep,) = r.one("ServiceMonitor")["spec"]["endpoints"]
    assert "interval" not in ep and "scrapeTimeout" not in ep, "empty: Prometheus' defaults"


def test_service_monitor_check_rejects_broken_objects():
    # check_service_monitor stands in for a schema: it must refuse what the CRD refuses.
    good = render({"serviceMonitor": {"enabled": True}}).one("ServiceMonitor")
    check_service_monitor(good)
    breakages = {
        "no spec": lambda d: d.pop("spec"),
        "no selector": lambda d: d["spec"].pop("selector"),
        "no endpoints": lambda d: d["spec"].pop("endpoints"),
        "empty endpoints": lambda d: d["spec"].update(endpoints=[]),
        "unknown spec field": lambda d: d["spec"].update(endpoint=[]),
        "unknown endpoint field": lambda d: d["spec"]["endpoints"][0].update(intervall="30s"),
        "numeric port": lambda d: d["spec"]["endpoints"][0].update(port=8222),
        "bad interval": lambda d: d["spec"]["endpoints"][0].update(interval="30 seconds"),
        "bad scheme": lambda d: d["spec"]["endpoints"][0].update(scheme="tcp"),
        "bad relabel action": lambda d: d["spec"]["endpoints"][0].update(relabelings=[{"action": "rename"}]),
        "non-string label": lambda d: d["metadata"]["labels"].update(release=1),
    }
    for what, breaks in breakages.items():
        doc = json.loads(json.dumps(good))
        breaks(doc)
        try:
            check_service_monitor(doc)
        except (AssertionError, KeyError):
            continue
        raise AssertionError(f"check_service_monitor accepted a ServiceMonitor with {what}")


def dashboard_configmap(r: Rendered) -> dict:
    (cm,) = [d for d in r.all("ConfigMap") if "grafana_dashboard" in d["metadata"].get("labels", {})]
    return cm


def test_grafana_dashboard_configmap_ships_the_dashboard_file():
    text = DASHBOARD_FILE.read_text()
    shipped = json.loads(text)  # valid JSON
    assert shipped["uid"] and shipped["title"] and shipped["panels"]
    ds = [v for v in shipped["templating"]["list"] if v["type"] == "datasource"]
    assert [(v["name"], v["query"]) for v in ds] == [("datasource", "prometheus")], ds

    r = render(
        {
            "grafanaDashboard": {
                "enabled": True,
                "namespace": "grafana",
                "labels": {"team": "bus"},
                "annotations": {"grafana_folder": "Angzarr"},
            }
        }
    )
    cm = dashboard_configmap(r)
    assert cm["metadata"]["name"] == f"{fullname(r)}-dashboard"
    assert cm["metadata"]["namespace"] == "grafana"
    labels = cm["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "1" and labels["team"] == "bus", labels
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Angzarr"}
    assert list(cm["data"]) == ["angzarr-bus.json"], list(cm["data"])
    # The exact file of the chart (which bus/tests/grafana_dashboard.rs checks
    # against a live server's /metrics).
    assert cm["data"]["angzarr-bus.json"] == text.rstrip("\n")


def test_grafana_dashboard_follows_a_custom_dead_letter_stream():
    shipped = json.loads(DASHBOARD_FILE.read_text())
    r = render({"grafanaDashboard": {"enabled": True}, "bus": {"nats": {"deadLetterStream": "poker-dead"}}})
    got = json.loads(dashboard_configmap(r)["data"]["angzarr-bus.json"])

    def dlq_var(d: dict) -> dict:
        (v,) = [v for v in d["templating"]["list"] if v["name"] == "dead_letter_stream"]
        return v

    v = dlq_var(got)
    assert v["query"] == "poker-dead" and v["current"]["value"] == "poker-dead", v
    assert dlq_var(shipped)["query"] == ".*-dlq"
    # Everything else is the shipped dashboard.
    for d in (got, shipped):
        d["templating"]["list"] = [x for x in d["templating"]["list"] if x["name"] != "dead_letter_stream"]
    assert got == shipped


def test_lint_passes_with_monitoring_enabled():
    # helm lint uses the chart's values.yaml: lint a copy with both turned on.
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "angzarr-bus"
        shutil.copytree(CHART, chart)
        values = yaml.safe_load((chart / "values.yaml").read_text())
        values["serviceMonitor"].update(enabled=True, labels={"release": "prom"})
        values["grafanaDashboard"]["enabled"] = True
        (chart / "values.yaml").write_text(yaml.safe_dump(values))
        result = asyncio.run(helm_sdkpy.Lint(CONFIG).run(str(chart)))
        assert result["TotalChartsLinted"] == 1, result
        assert not result.get("Errors"), result
        bad = [m for m in result.get("Messages") or [] if m["Severity"] >= 2]
        assert not bad, f"lint warnings/errors: {bad}"


TESTS = [v for k, v in list(globals().items()) if k.startswith("test_") and callable(v)]


def main() -> int:
    passed = failed = 0
    for test in TESTS:
        try:
            test()
        except Exception:  # noqa: BLE001  (report and go on)
            failed += 1
            print(f"FAIL {test.__name__}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {test.__name__}")
    STUB.shutdown()
    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
