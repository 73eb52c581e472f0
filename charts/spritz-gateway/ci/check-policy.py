"""Policy checks on the chart's rendered manifests (run by scripts/check-deploy).

    check-policy.py RENDERED.yaml default|all-features

Asserts what an operator relies on and a schema cannot see: secrets only by
reference, hardened pods, probes on the ops listener, one PDB per Deployment, the
notifier's RBAC and leader-election env, HPA-vs-KEDA exclusivity, and alert rules and
scrape jobs that stay apart when several releases share one Prometheus. Needs PyYAML.
"""

import re
import sys

import yaml

SECRET_ENV = re.compile(r"(TOKEN|SECRET|CLIENT_ID|AMQP_URL|REDIS_URL)")
AGGREGATION = re.compile(r"\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile|count_values)\b\s*(by|without)?\s*\(([^()]*)\)?")


def rule_problems(rule: dict) -> list[str]:
    """An alert rule must name one release: every aggregation keeps `namespace` and
    `job`, no join ignores them (`on()`), and it links its runbook section."""
    name, expr = rule.get("alert") or rule.get("record"), rule["expr"]
    problems = []
    for m in AGGREGATION.finditer(expr):
        op, mod, labels = m.groups()
        if mod is None:
            # `sum(x)` or `sum (x)`: aggregates over everything, across releases.
            problems.append(f"{name}: `{op}(…)` aggregates across releases; use `{op} by (namespace, job, …)`")
        elif mod == "without" or not {"namespace", "job"} <= {l.strip() for l in labels.split(",")}:
            problems.append(f"{name}: `{m.group(0)}` drops namespace or job")
    if re.search(r"\bon\s*\(\s*\)", expr):
        problems.append(f"{name}: `on()` joins across releases")
    if rule.get("alert"):
        annotations = rule.get("annotations") or {}
        url = annotations.get("runbook_url", "")
        if not url.endswith("#" + rule["alert"].lower()):
            problems.append(f"{name}: runbook_url must end in #{rule['alert'].lower()} (docs/runbook.md), got {url!r}")
        for key in ("summary", "description"):
            if not annotations.get(key):
                problems.append(f"{name}: no {key} annotation")
        if (rule.get("labels") or {}).get("severity") not in ("warning", "critical"):
            problems.append(f"{name}: severity must be warning or critical")
    return problems


def seconds(duration: str) -> float:
    """`500ms`, `3s`, `10m`, `1h` in seconds."""
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h)", duration)
    if not m:
        raise SystemExit(f"not a duration: {duration!r}")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def main() -> int:
    path, variant = sys.argv[1], sys.argv[2]
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    errors: list[str] = []

    def err(msg: str) -> None:
        errors.append(msg)

    if "Secret" in by_kind:
        err("the chart renders a Secret; secrets must be referenced (existingSecret)")

    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind.get("Deployment", [])}
    if sorted(deployments) != ["gateway", "notifier", "worker"]:
        err(f"expected gateway, worker and notifier Deployments, got {sorted(deployments)}")

    pdb_selectors = [p["spec"]["selector"]["matchLabels"] for p in by_kind.get("PodDisruptionBudget", [])]
    for component, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            err(f"{component}: pod securityContext.runAsNonRoot is not true")
        if not any(all(labels.get(k) == v for k, v in sel.items()) for sel in pdb_selectors):
            err(f"{component}: no PodDisruptionBudget selects its pods")
        anti = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
        terms = [t.get("podAffinityTerm", {}) for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
        terms += anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
        if not any(t.get("topologyKey") == "kubernetes.io/hostname"
                   and (t.get("labelSelector") or {}).get("matchLabels", {}).get("app.kubernetes.io/component") == component
                   for t in terms):
            err(f"{component}: no pod anti-affinity spreading its replicas over nodes")
        if variant == "default" and not anti.get("preferredDuringSchedulingIgnoredDuringExecution"):
            err(f"{component}: default anti-affinity must be soft (preferredDuringScheduling)")
        if component != "notifier" and pod.get("automountServiceAccountToken") is not False:
            err(f"{component}: mounts a service account token it does not need")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                err(f"{component}/{c['name']}: root file system is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                err(f"{component}/{c['name']}: allowPrivilegeEscalation is not false")
            if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
                err(f"{component}/{c['name']}: capabilities not dropped")
            if (c.get("livenessProbe") or {}).get("httpGet", {}).get("path") != "/healthz":
                err(f"{component}/{c['name']}: liveness probe is not /healthz")
            if (c.get("readinessProbe") or {}).get("httpGet", {}).get("path") != "/readyz":
                err(f"{component}/{c['name']}: readiness probe is not /readyz")
            if not (c.get("resources") or {}).get("requests"):
                err(f"{component}/{c['name']}: no resource requests")
            env = {e["name"]: e for e in c.get("env", [])}
            for name, e in env.items():
                if SECRET_ENV.search(name) and "secretKeyRef" not in (e.get("valueFrom") or {}):
                    err(f"{component}/{c['name']}: {name} is not read from a Secret")
            if "SPRITZ_METRICS_ADDR" not in env or "SPRITZ_AMQP_URL" not in env:
                err(f"{component}/{c['name']}: SPRITZ_METRICS_ADDR and SPRITZ_AMQP_URL are required")
            if component == "notifier":
                for name, field in [("POD_NAME", "metadata.name"), ("SPRITZ_NOTIFIER_LEASE_NAMESPACE", "metadata.namespace")]:
                    got = (env.get(name, {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
                    if got != field:
                        err(f"notifier: {name} must come from the downward API ({field})")
                if "SPRITZ_NOTIFIER_LEASE_NAME" not in env:
                    err("notifier: SPRITZ_NOTIFIER_LEASE_NAME missing")
            ca_file = (env.get("SPRITZ_TLS_CA_FILE") or {}).get("value")
            if variant == "all-features":
                mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
                volumes = {v["name"] for v in pod.get("volumes", [])}
                if not ca_file or "ca-bundle" not in volumes or not ca_file.startswith(mounts.get("ca-bundle", "\0") + "/"):
                    err(f"{component}/{c['name']}: SPRITZ_TLS_CA_FILE must name a file of the mounted ca-bundle volume")
            elif ca_file:
                err(f"{component}/{c['name']}: default values set SPRITZ_TLS_CA_FILE without a CA bundle")
            if component == "worker" and "SPRITZ_REDIS_URL" not in env:
                err("worker: SPRITZ_REDIS_URL missing")
            if component == "worker":
                grace = seconds(env.get("SPRITZ_WORKER_SHUTDOWN_GRACE", {}).get("value", "25s"))
                if pod.get("terminationGracePeriodSeconds", 30) <= grace:
                    err("worker: terminationGracePeriodSeconds must exceed SPRITZ_WORKER_SHUTDOWN_GRACE")

    # Notifier RBAC: Spritz objects and Leases, nothing more.
    rules = [r for kind in ("Role", "ClusterRole") for role in by_kind.get(kind, []) for r in role.get("rules", [])]
    spritz = [r for r in rules if "spritzes" in r["resources"]]
    leases = [r for r in rules if "leases" in r["resources"]]
    # Exactly the calls of notifier/src: watcher list+watch and an annotation patch on
    # spritzes; get/update of its own Lease by name, and create (which resourceNames
    # cannot restrict) on its own.
    if not spritz or any(sorted(r["verbs"]) != ["list", "patch", "watch"] or r["apiGroups"] != ["spritz.sh"] for r in spritz):
        err("notifier RBAC: spritzes.spritz.sh needs exactly list/watch/patch")
    lease_name = next((e.get("value") for d in deployments.values() if d is deployments.get("notifier")
                       for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
                       if e["name"] == "SPRITZ_NOTIFIER_LEASE_NAME"), None)
    named = [r for r in leases if r.get("resourceNames")]
    creating = [r for r in leases if not r.get("resourceNames")]
    if len(named) != 1 or sorted(named[0]["verbs"]) != ["get", "update"] or named[0]["resourceNames"] != [lease_name]:
        err(f"notifier RBAC: one Lease rule with get/update on resourceNames [{lease_name}] expected")
    if len(creating) != 1 or creating[0]["verbs"] != ["create"]:
        err("notifier RBAC: the only Lease rule without resourceNames must be create (which resourceNames cannot restrict)")
    if any(r not in spritz and r not in leases for r in rules):
        err("notifier RBAC grants more than Spritz objects and Leases")

    policies = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in by_kind.get("NetworkPolicy", [])}
    if variant == "default" and policies:
        err("default values: NetworkPolicies are opt-in")
    if variant == "all-features" and sorted(policies) != ["gateway", "notifier", "worker"]:
        err(f"all-features: one NetworkPolicy per component expected, got {sorted(policies)}")
    for component, np in policies.items():
        spec = np["spec"]
        if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
            err(f"NetworkPolicy {component}: must restrict both Ingress and Egress")
        ports = {p.get("port") for r in spec.get("ingress", []) for p in r.get("ports") or [{}]}
        allowed = {"metrics", "http"} if component == "gateway" else {"metrics"}
        if not ports <= allowed or "metrics" not in ports:
            err(f"NetworkPolicy {component}: ingress must be only on ports {sorted(allowed)}, got {sorted(map(str, ports))}")
        if not any(p.get("port") == 53 for r in spec.get("egress", []) for p in r.get("ports", [])):
            err(f"NetworkPolicy {component}: no DNS egress")
        if any(not r.get("ports") for r in spec.get("egress", [])):
            err(f"NetworkPolicy {component}: an egress rule without ports allows everything")
        if variant == "all-features":
            for r in spec.get("ingress", []):
                if not r.get("from"):
                    err(f"NetworkPolicy {component}: all-features ingress rules name their peers")

    hpas, scaled = by_kind.get("HorizontalPodAutoscaler", []), by_kind.get("ScaledObject", [])
    if hpas and scaled:
        err("both an HPA and a KEDA ScaledObject scale the workers")
    if variant == "default" and (len(hpas) != 1 or scaled):
        err("default values: one worker HPA and no ScaledObject expected")
    # Scale on the work in hand, not on CPU: workers wait on the agent.
    for hpa in hpas:
        metrics = hpa["spec"].get("metrics", [])
        pods = [m for m in metrics if m["type"] == "Pods"]
        if variant == "default" and (len(pods) != 1 or pods[0]["pods"]["metric"]["name"] != "spritz_worker_in_flight"):
            err("default worker HPA: the Pods metric spritz_worker_in_flight must be its primary signal")
        if metrics and all(m["type"] == "Resource" for m in metrics):
            err("worker HPA scales on CPU/memory only")
    for so in scaled:
        for trig in so["spec"]["triggers"]:
            md = trig["metadata"]
            if trig["type"] != "rabbitmq" or md.get("protocol") != "http" or md.get("mode") != "QueueLength":
                err("KEDA trigger must be rabbitmq, protocol http, mode QueueLength (ready + unacked)")
            if str(md.get("excludeUnacknowledged", "false")).lower() == "true":
                err("KEDA trigger excludes unacked messages: busy workers become invisible")
            if md.get("queueName") != "spritz.slack.events":
                err("KEDA ScaledObject does not watch spritz.slack.events")
    if variant == "all-features":
        if len(scaled) != 1:
            err("all-features: one KEDA ScaledObject expected")
        elif scaled[0]["spec"]["triggers"][0]["metadata"].get("value") != "16":
            err("all-features: KEDA value must be prefetch 32 x 50 % = 16")
        for kind in ("Ingress", "ServiceMonitor", "PrometheusRule"):
            if kind not in by_kind:
                err(f"all-features: {kind} not rendered")

    for pr in by_kind.get("PrometheusRule", []):
        alerts = [r for g in pr["spec"]["groups"] for r in g["rules"]]
        if not alerts:
            err("PrometheusRule has no rules")
        for rule in alerts:
            for problem in rule_problems(rule):
                err(f"PrometheusRule: {problem}")
        if variant == "all-features":
            # ci/all-features-values.yaml moves the runbook links.
            for rule in alerts:
                url = (rule.get("annotations") or {}).get("runbook_url", "")
                if rule.get("alert") and not url.startswith("https://git.example.com/"):
                    err(f"PrometheusRule: {rule['alert']}: runbook_url not moved by metrics.prometheusRule.runbookUrl")

    # Scrape jobs unique per release: job = <release>-spritz-<component>, never a bare
    # component name another chart could produce.
    for sm in by_kind.get("ServiceMonitor", []):
        release = sm["metadata"]["labels"]["app.kubernetes.io/instance"]
        if "jobLabel" in sm["spec"]:
            err("ServiceMonitor: jobLabel would name jobs after a bare label value; relabel job instead")
        for ep in sm["spec"]["endpoints"]:
            jobs = [r for r in ep.get("relabelings", []) if r.get("targetLabel") == "job"]
            if len(jobs) != 1 or jobs[0].get("replacement") != f"{release}-spritz-$1" \
                    or jobs[0].get("sourceLabels") != ["__meta_kubernetes_service_label_app_kubernetes_io_component"]:
                err(f"ServiceMonitor endpoint {ep.get('port')}: job must be relabelled to {release}-spritz-<component>")

    dashboards = [c for c in by_kind.get("ConfigMap", []) if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if len(dashboards) != 1 or not any(k.endswith(".json") for k in dashboards[0].get("data", {})):
        err("dashboards ConfigMap with label grafana_dashboard: \"1\" and JSON data expected")

    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
