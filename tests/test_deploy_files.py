"""The deployment files (docker/): Dockerfiles, compose stack and Kubernetes manifests parse, and
refer to files, config keys, flags and services that exist. No container engine is needed (CI has
none); `make image` / `make image-run` build and run the image where podman is installed."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
DOCKERFILES = ("Dockerfile.cpu", "Dockerfile.cuda")


def _compose_cfg(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from pipeline.config import register, validate

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=name, overrides=[o for o in overrides if not o.startswith("hydra.")])
    validate(cfg)
    return cfg


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _hftbot_run_overrides(command: list[str]) -> tuple[str, list[str]]:
    """``run --config-name NAME k=v...`` -> (NAME, overrides)."""
    assert command[0] == "run", command
    args = list(command[1:])
    name = "replay"
    if "--config-name" in args:
        i = args.index("--config-name")
        name = args[i + 1]
        del args[i:i + 2]
    return name, args


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_copies_only_what_exists_and_installs_known_extras(name):
    inst = _instructions(DOCKER / name)
    assert inst[0][0] == "ARG" and inst[0][1].startswith("BASE="), "the base image is a build argument"
    stages = [a for w, a in inst if w == "FROM"]
    assert len(stages) == 2 and stages[0] == "${BASE} AS xdp" and stages[1] == "${BASE}"
    copies = [a for w, a in inst if w == "COPY"]
    assert copies, "nothing copied"
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        if "--from=xdp" in args:
            assert parts[0] == "/src/build/xdp/"
            continue
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"{name}: COPY {src}: no such path in the repository"
    # the same XDP build command as the Makefile's `make xdp`
    assert ("RUN", "make xdp") in inst
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    default = next(a for w, a in inst if w == "ARG" and a.startswith("EXTRAS=")).split("=", 1)[1].strip('"')
    assert set(filter(None, default.split(","))) <= set(extras), f"{name}: EXTRAS={default} names unknown extras"
    if name == "Dockerfile.cpu":
        assert default == "", "the CPU image installs no extras by default (no test/train/cuda)"
    else:
        assert default == "cuda" and "nvidia/cuda" in inst[0][1]
    runs = " ".join(a for w, a in inst if w == "RUN")
    assert "pip install" in runs and "-e" in runs
    assert "--mount=type=secret,id=ca" in runs  # the CA bundle never lands in a layer
    assert next(a for w, a in inst if w == "ENTRYPOINT").endswith('"hftbot"]')
    assert (DOCKER / f"{name}.dockerignore").is_file()
    ignored = (DOCKER / f"{name}.dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_compose_stack_refers_to_existing_files_flags_and_config_keys(tmp_path):
    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    svc = doc["services"]
    assert {"hftbot", "venue", "prometheus", "grafana", "sample"} <= set(svc)
    # bind mounts: relative to docker/
    for name, s in svc.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (DOCKER / src).exists(), f"{name}: volume source {src} does not exist"
    assert (DOCKER / svc["hftbot"]["build"]["dockerfile"].removeprefix("docker/")).is_file()

    # the pipeline's overrides compose and validate against conf/ (unknown keys are errors)
    name, overrides = _hftbot_run_overrides(svc["hftbot"]["command"])
    cfg = _compose_cfg(name, overrides)
    assert cfg.venue.enabled is False and cfg.bridge.host == "venue"
    assert cfg.metrics.host == "0.0.0.0"

    # the venue's flags are the simulator's (python -m replay.venue)
    from replay.venue.__main__ import parse_args

    assert svc["venue"]["entrypoint"][-3:] == ["python", "-m", "replay.venue"]
    vargs = list(svc["venue"]["command"])
    capture = vargs[vargs.index("--capture") + 1]
    assert capture == cfg.feed.path, "the venue replays the capture the bot replays"
    assert capture.startswith("/data/") and "/data/feed/sample.pcap" in " ".join(svc["sample"]["command"])
    (tmp_path / "sample.pcap").write_bytes(b"")  # the simulator's parser checks that the file exists
    vargs[vargs.index("--capture") + 1] = str(tmp_path / "sample.pcap")
    vc = parse_args(vargs)
    assert vc.wall and vc.port == cfg.bridge.port
    assert (vc.sender, vc.target) == (cfg.bridge.target_comp_id, cfg.bridge.sender_comp_id)
    hc = " ".join(svc["venue"]["healthcheck"]["test"])
    assert f"('127.0.0.1', {vc.port})" in hc
    assert f"'{vc.state_dir}/venue.journal'" in hc  # the healthcheck reads this venue's journal
    # the stores and the kill file are on the volume (ClOrdIDs must not repeat across restarts)
    assert str(cfg.bridge.state_dir).startswith("/data/") and str(cfg.risk.kill.file).startswith("/data/")

    # Prometheus scrapes the service and port the pipeline serves on
    prom = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert f"hftbot:{cfg.metrics.port}" in targets
    mounts = dict(v.split(":")[:2] for v in svc["prometheus"]["volumes"] if v.startswith("."))
    assert mounts["./prometheus/prometheus.yml"] in " ".join(svc["prometheus"]["command"])

    # Grafana: provisioning mounted where Grafana reads it, dashboards where the provider looks
    gm = dict(v.split(":")[:2] for v in svc["grafana"]["volumes"])
    assert gm["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = [p for f in (DOCKER / "grafana" / "provisioning" / "dashboards").glob("*.y*ml")
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert any(p["options"]["path"] == gm["./grafana/dashboards"] for p in providers)
    assert list((DOCKER / "grafana" / "dashboards").glob("*.json")), "no dashboard JSON"
    ds = [d for f in (DOCKER / "grafana" / "provisioning" / "datasources").glob("*.y*ml")
          for d in yaml.safe_load(f.read_text())["datasources"]]
    assert any(d["url"] == "http://prometheus:9090" for d in ds)
    # host ports only on loopback
    for name, s in svc.items():
        for p in s.get("ports", []):
            assert p.startswith("127.0.0.1:"), f"{name}: port {p} is published on every interface"


def _k8s_docs() -> dict[str, list[dict]]:
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(K8S.glob("*.yaml"))}


def test_kubernetes_live_pod_has_the_xdp_privileges_and_guaranteed_pinned_cpus():
    docs = _k8s_docs()
    kust = docs.pop("kustomization.yaml")[0]
    for f in kust["resources"]:
        assert (K8S / f).is_file(), f"kustomization: {f} missing"
    (dep,) = docs["deployment.yaml"]
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert pod["hostNetwork"] is True
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc.get("privileged") is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"BPF", "NET_ADMIN", "NET_RAW", "IPC_LOCK"} <= set(sc["capabilities"]["add"])
    assert "SYS_ADMIN" not in sc["capabilities"]["add"]
    # every added capability is justified in a comment next to it
    text = (K8S / "deployment.yaml").read_text()
    for cap in sc["capabilities"]["add"]:
        assert re.search(rf"#\s*{cap}:", text), f"capability {cap} has no comment saying why"
    # Guaranteed QoS with whole CPUs: requests == limits, integer cpu; hugepages requested
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    assert req == lim
    assert str(req["cpu"]).isdigit() and int(req["cpu"]) >= 2
    assert "hugepages-2Mi" in req
    vols = {v["name"]: v for v in pod["volumes"]}
    for m in c["volumeMounts"]:
        assert m["name"] in vols, f"volumeMount {m['name']} has no volume"
    bpf = next(m for m in c["volumeMounts"] if m["mountPath"] == "/sys/fs/bpf")
    assert vols[bpf["name"]]["hostPath"]["path"] == "/sys/fs/bpf"
    hp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/dev/hugepages")
    assert vols[hp["name"]]["emptyDir"]["medium"] == "HugePages-2Mi"
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == docs["pvc.yaml"][0]["metadata"]["name"]
    cm = docs["configmap.yaml"][0]
    assert all(r["configMapRef"]["name"] == cm["metadata"]["name"] for r in c["envFrom"])
    # the run's overrides compose against conf/prod.yaml with the ConfigMap's environment
    name, overrides = _hftbot_run_overrides(c["args"])
    env = {**cm["data"], "POD_IP": "10.1.2.3"}
    overrides = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], o) for o in overrides]
    mp = pytest.MonkeyPatch()
    try:
        for k, v in env.items():
            mp.setenv(k, str(v))
        cfg = _compose_cfg(name, overrides)
        assert cfg.feed.source == "live" and cfg.feed.live.interface == cm["data"]["HFTBOT_LIVE_IFACE"]
        assert cfg.bridge.host == cm["data"]["FIX_HOST"] and cfg.venue.enabled is False
        assert cfg.metrics.port == c["ports"][0]["containerPort"] == c["readinessProbe"]["httpGet"]["port"]
        assert str(cfg.risk.kill.file).startswith("/data/")  # on the volume, not the read-only image
    finally:
        mp.undo()
    svc = docs["service.yaml"][0]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    kubelet = docs["kubelet-config.yaml"][0]
    assert kubelet["cpuManagerPolicy"] == "static"
    assert "kubelet-config.yaml" not in kust["resources"]  # node configuration, not a cluster object


def test_make_fragment_targets_and_files_exist():
    mk = (ROOT / "mk" / "docker.mk").read_text()
    for target in ("image", "image-run", "image-cuda", "base-image"):
        assert re.search(rf"^{target}:.*## ", mk, re.M), f"mk/docker.mk: no documented target {target}"
    for ref in re.findall(r"docker/[\w.\-]+", mk):
        assert (ROOT / ref).exists(), f"mk/docker.mk refers to {ref}, which does not exist"
    # `make image-xdp-check` tries exactly the live pod's capabilities and seccomp setting
    (dep,) = _k8s_docs()["deployment.yaml"]
    sc = dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    caps = re.search(r"^K8S_CAPS := (\S+)$", mk, re.M).group(1).split(",")
    assert sorted(caps) == sorted(sc["capabilities"]["add"])
    assert sc["seccompProfile"]["type"] == "Unconfined" and "seccomp=unconfined" in mk
