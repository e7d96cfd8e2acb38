#!/usr/bin/env python3
"""Turns rendered Kubernetes objects into what `podman kube play` can run on one machine.

usage: podman_pods.py RENDERED_YAML WORK_DIR NAME [NAME ...]
  NAME: a StatefulSet or Deployment of RENDERED_YAML (its replica 0 is written) or, with
  --pod FILE, a Pod (the injector's output). Writes WORK_DIR/pod-NAME.yaml per NAME.

podman 4.3 is not a kubelet, and this machine has no cluster network. What this changes, and
nothing else (every other field runs as rendered):
- replica 0 of a StatefulSet becomes Pod NAME-0 (a Deployment's: NAME-0), with POD_NAME as
  the downward API would give it (podman has no fieldRef for metadata.name in 4.3), and
  $(VAR) in command and args expanded from the env as the kubelet does (podman does not);
- hostNetwork: true, with every Service name of the render resolving to 127.0.0.1 through a
  mounted /etc/hosts (no cluster DNS or Service VIPs here; podman ignores hostAliases on the
  host network; one replica of each listens on distinct ports), and so no `ports` lists
  (podman refuses port mappings on the host network);
- Secret and ConfigMap volumes become hostPath directories holding the decoded data (podman
  4.3 mounts secret data still base64-encoded), written under WORK_DIR/volumes/;
- volumeClaimTemplates become hostPath directories owned by the pod's runAsUser;
- emptyDir with medium: Memory becomes a hostPath directory under WORK_DIR/memory/, which must
  be on tmpfs (/dev/shm): podman 4.3 would put the emptyDir on disk.
"""
import copy, os, re, sys

import yaml

args = sys.argv[1:]
pod_files = {}
while "--pod" in args:
    i = args.index("--pod")
    pod_files[args[i + 1]] = args[i + 2]
    del args[i:i + 3]
rendered_path, work, names = args[0], args[1], args[2:]
documents = [d for d in yaml.safe_load_all(open(rendered_path)) if d]
namespace = next(d["metadata"]["name"] for d in documents if d["kind"] == "Namespace")
secrets = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Secret"}
config_maps = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ConfigMap"}


def service_names():
    names = set()
    for d in documents:
        if d["kind"] != "Service":
            continue
        service = d["metadata"]["name"]
        names |= {f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"}
        # Headless Services name each StatefulSet replica: NAME-0.SERVICE.NAMESPACE.svc.
        for s in documents:
            if s["kind"] == "StatefulSet" and s["spec"]["serviceName"] == service:
                names.add(f"{s['metadata']['name']}-0.{service}.{namespace}.svc")
    return sorted(names)


def host_directory(*parts, mode=0o755, owner=None):
    path = os.path.join(work, "volumes", *parts)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner, owner)
    return path


def materialize(pod_name, spec, extra_secrets):
    for volume in spec.get("volumes", []):
        name = volume["name"]
        if "secret" in volume or "configMap" in volume:
            kind = "secret" if "secret" in volume else "configMap"
            source_name = volume[kind]["secretName" if kind == "secret" else "name"]
            source = (secrets if kind == "secret" else config_maps).get(source_name) or extra_secrets.get(source_name)
            if source is None:
                sys.exit(f"{pod_name}: volume {name} needs {kind} {source_name}, which the render does not hold")
            path = host_directory(pod_name, name)
            for key, value in (source.get("stringData") or source.get("data") or {}).items():
                target = os.path.join(path, key)
                with open(target, "w") as f:
                    f.write(value)
                os.chmod(target, 0o644)
            volume.pop(kind)
            volume["hostPath"] = {"path": path, "type": "Directory"}
        elif volume.get("emptyDir", {}).get("medium") == "Memory":
            path = os.path.join(work, "memory", pod_name, name)
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o1777)
            volume.pop("emptyDir")
            volume["hostPath"] = {"path": path, "type": "Directory"}


def pod_from(workload):
    name = f"{workload['metadata']['name']}-0"
    template = copy.deepcopy(workload["spec"]["template"])
    spec = template["spec"]
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        spec.setdefault("volumes", []).append({"name": claim["metadata"]["name"], "hostPath": {"path": "", "type": "Directory"}})
    return name, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": template["metadata"].get("labels", {})},
                  "spec": spec}


def adapt(name, pod, extra_secrets):
    spec = pod["spec"]
    spec["hostNetwork"] = True
    spec["restartPolicy"] = "Never"
    # podman ignores hostAliases on the host network: the same entries as a mounted /etc/hosts.
    hosts = os.path.join(host_directory(name), "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n127.0.0.1 " + " ".join(service_names()) + "\n")
    os.chmod(hosts, 0o644)
    spec.setdefault("volumes", []).append({"name": "veil-test-hosts", "hostPath": {"path": hosts, "type": "File"}})
    run_as = spec.get("securityContext", {}).get("runAsUser")
    for container in spec.get("containers", []):
        run_as = run_as or container.get("securityContext", {}).get("runAsUser")
        # On the host network a container's ports are the host's: podman 4.3 refuses port
        # mappings there (they only name ports; nothing else reads them).
        container.pop("ports", None)
        container.setdefault("volumeMounts", []).append({"name": "veil-test-hosts", "mountPath": "/etc/hosts", "readOnly": True})
        values = {}
        for variable in container.get("env", []):
            if variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                variable.pop("valueFrom")
                variable["value"] = name
            if "value" in variable:
                values[variable["name"]] = variable["value"]
        # The kubelet expands $(VAR) in command and args from the container's env; podman 4.3 does not.
        for key in ("command", "args"):
            if key in container:
                container[key] = [re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), a) for a in container[key]]
    for volume in spec.get("volumes", []):
        if volume.get("hostPath", {}).get("path") == "":
            volume["hostPath"]["path"] = host_directory(name, volume["name"], mode=0o700, owner=run_as or 0)
    materialize(name, spec, extra_secrets)
    return pod


extra = {}
workloads = {d["metadata"]["name"]: d for d in documents if d["kind"] in ("StatefulSet", "Deployment")}
for name in names:
    if name in pod_files:
        pod = yaml.safe_load(open(pod_files[name]))
        # The app namespace's ConfigMap veil-root and Secret veil-simulation-key, as an operator creates them.
        app_objects = [d for d in yaml.safe_load_all(open(pod_files[name] + ".objects")) if d] if os.path.exists(pod_files[name] + ".objects") else []
        extra = {d["metadata"]["name"]: d for d in app_objects}
        pod_name = pod["metadata"]["name"]
    else:
        if name not in workloads:
            sys.exit(f"no StatefulSet or Deployment named {name} in {rendered_path}")
        pod_name, pod = pod_from(workloads[name])
    adapt(pod_name, pod, extra)
    with open(os.path.join(work, f"pod-{name}.yaml"), "w") as f:
        yaml.safe_dump(pod, f)
    print(os.path.join(work, f"pod-{name}.yaml"))
