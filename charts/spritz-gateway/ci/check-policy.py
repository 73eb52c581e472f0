"""Policy checks on the chart's rendered manifests (run by scripts/check-deploy).

    check-policy.py RENDERED.yaml default|all-features

Asserts what an operator relies on and a schema cannot see: secrets only by
reference, hardened pods, probes on the ops listener, one PDB per Deployment, the
notifier's RBAC and leader-election env, and HPA-vs-KEDA exclusivity. Needs PyYAML.
"""

import re
import sys

import yaml

SECRET_ENV = re.compile(r"(TOKEN|SECRET|CLIENT_ID|AMQP_URL|REDIS_URL)")


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
    if not spritz or any(sorted(r["verbs"]) != ["get", "list", "patch", "watch"] or r["apiGroups"] != ["spritz.sh"] for r in spritz):
        err("notifier RBAC: spritzes.spritz.sh needs exactly get/list/watch/patch")
    if len(leases) != 1 or sorted(leases[0]["verbs"]) != ["create", "get", "patch", "update"]:
        err("notifier RBAC: one Lease rule with get/create/update/patch expected")
    if any(r not in spritz and r not in leases for r in rules):
        err("notifier RBAC grants more than Spritz objects and Leases")

    hpas, scaled = by_kind.get("HorizontalPodAutoscaler", []), by_kind.get("ScaledObject", [])
    if hpas and scaled:
        err("both an HPA and a KEDA ScaledObject scale the workers")
    if variant == "default" and (len(hpas) != 1 or scaled):
        err("default values: one worker HPA and no ScaledObject expected")
    if variant == "all-features":
        if len(scaled) != 1:
            err("all-features: one KEDA ScaledObject expected")
        elif scaled[0]["spec"]["triggers"][0]["metadata"].get("queueName") != "spritz.slack.events":
            err("KEDA ScaledObject does not watch spritz.slack.events")
        for kind in ("Ingress", "ServiceMonitor", "PrometheusRule"):
            if kind not in by_kind:
                err(f"all-features: {kind} not rendered")

    dashboards = [c for c in by_kind.get("ConfigMap", []) if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if len(dashboards) != 1 or not any(k.endswith(".json") for k in dashboards[0].get("data", {})):
        err("dashboards ConfigMap with label grafana_dashboard: \"1\" and JSON data expected")

    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
