"""Checks that one rendering of manifests/ fits together, beyond what the schemas
say: every object in the one Namespace, every reference resolved, the Service and
the NetworkPolicy selecting the gateway's Pod, and the Deployment as the README
promises it (one replica, non-root, read-only root, probes, the catalog mounted
as a directory, the Kubernetes runtime). Prints each problem; exits 1 on any.

    python scripts/manifests-refs.py RENDERED.yaml
"""
import sys

import yaml

CLUSTER_WIDE = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
# Created by hand, never kept in manifests/ (README: "Deploy").
BY_HAND = {("Secret", "mcp-fleet-token")}


def check(docs):
    problems = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    def need(kind, name, why):
        if name not in by_kind.get(kind, {}) and (kind, name) not in BY_HAND:
            problems.append(f"{why}: no {kind} {name}")

    namespaces = list(by_kind.get("Namespace", {}))
    if len(namespaces) != 1:
        return [f"expected one Namespace, found {namespaces}"]
    ns = namespaces[0]
    for d in docs:
        got = d["metadata"].get("namespace")
        if d["kind"] not in CLUSTER_WIDE and got != ns:
            problems.append(f"{d['kind']} {d['metadata']['name']} is in {got}, not {ns}")

    for role in by_kind.get("Role", {}).values():
        for rule in role["rules"]:
            kinds = {"deployments": "Deployment", "configmaps": "ConfigMap", "secrets": "Secret"}
            for res in rule["resources"]:
                for rn in rule.get("resourceNames", []) if res in kinds else []:
                    need(kinds[res], rn, f"Role {role['metadata']['name']} resourceNames")
    for rb in by_kind.get("RoleBinding", {}).values():
        need(rb["roleRef"]["kind"], rb["roleRef"]["name"], f"RoleBinding {rb['metadata']['name']}")
        for s in rb.get("subjects", []):
            need(s["kind"], s["name"], f"RoleBinding {rb['metadata']['name']}")
            if s.get("namespace") != ns:
                problems.append(f"RoleBinding {rb['metadata']['name']}: subject in {s.get('namespace')}")

    deployments = list(by_kind.get("Deployment", {}).values())
    if len(deployments) != 1:
        return problems + [f"expected one Deployment, found {len(deployments)}"]
    dep = deployments[0]
    problems += check_deployment(dep, need)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}

    def selects(selector, what):
        if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{what} does not select the gateway's Pod ({selector} vs {pod_labels})")

    for svc in by_kind.get("Service", {}).values():
        selects(svc["spec"]["selector"], f"Service {svc['metadata']['name']}")
        for p in svc["spec"]["ports"]:
            if p["targetPort"] not in ports and p["targetPort"] not in ports.values():
                problems.append(f"Service {svc['metadata']['name']}: no container port {p['targetPort']}")
    for np in by_kind.get("NetworkPolicy", {}).values():
        selects(np["spec"]["podSelector"].get("matchLabels"), f"NetworkPolicy {np['metadata']['name']}")
        for rule in np["spec"].get("ingress", []):
            if not rule.get("from"):
                problems.append(f"NetworkPolicy {np['metadata']['name']}: a rule admits every source")
            for peer in rule.get("from", []):
                if not peer.get("podSelector", {}).get("matchLabels"):
                    problems.append(f"NetworkPolicy {np['metadata']['name']}: a peer without pod labels")
    return problems


def check_deployment(dep, need):
    problems = []
    spec = dep["spec"]["template"]["spec"]
    name = f"Deployment {dep['metadata']['name']}"
    need("ServiceAccount", spec["serviceAccountName"], name)
    (c,) = spec["containers"]
    sc = c.get("securityContext", {})
    args = c.get("args", [])
    wanted = {
        "one replica": dep["spec"].get("replicas") == 1,
        "runs as non-root": spec.get("securityContext", {}).get("runAsNonRoot") is True,
        "a read-only root filesystem": sc.get("readOnlyRootFilesystem") is True,
        "no privilege escalation": sc.get("allowPrivilegeEscalation") is False,
        "every capability dropped": sc.get("capabilities", {}).get("drop") == ["ALL"],
        "liveness on /health": c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/health",
        "readiness on /readyz": "/readyz" in " ".join(c.get("readinessProbe", {}).get("exec", {}).get("command", [])),
        "--runtime kubernetes": "--runtime kubernetes" in " ".join(args),
        "port 8811": any(p["containerPort"] == 8811 for p in c["ports"]),
    }
    problems += [f"{name}: not {what}" for what, ok in wanted.items() if not ok]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    config_dir = args[args.index("--config-dir") + 1] if "--config-dir" in args else None
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    config = mounts.get(config_dir)
    if config is None or "subPath" in config:
        # kubelet never updates a subPath mount: the catalog must be a directory.
        problems.append(f"{name}: the config directory {config_dir} is not a whole-volume mount")
    for v in volumes.values():
        sources = v.get("projected", {}).get("sources", []) + [v]
        for s in sources:
            if "configMap" in s:
                need("ConfigMap", s["configMap"]["name"], f"{name} volume {v['name']}")
            if "secret" in s:
                need("Secret", s["secret"].get("name") or s["secret"].get("secretName"), f"{name} volume {v['name']}")
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            need("Secret", ref["name"], f"{name} env {e['name']}")
        if e["name"] == "MCP_FLEET_OWNER_DEPLOYMENT":
            need("Deployment", e["value"], f"{name} env {e['name']}")
    return problems


def main():
    with open(sys.argv[1]) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    problems = check(docs)
    for p in problems:
        print(f"{sys.argv[1]}: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
