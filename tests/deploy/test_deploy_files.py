"""deploy/: the Dockerfile, compose file, Kubernetes manifests and systemd unit parse, and agree.

No Docker engine or cluster runs here, so the test checks what can be checked: every
file parses, the config they mount validates with regretflow's own config checker and
the Kafka connector's option checker, and the ports, paths and names agree across files.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import PurePosixPath

import yaml

from regretflow.connectors.kafka import SINK_OPTIONS, SOURCE_OPTIONS, kafka_settings
from regretflow.engine.config import load_config
from tests.conftest import REGRETFLOW, REPO

DEPLOY = REPO / "deploy"
CONFIG_FILE = DEPLOY / "docker" / "regretflow.toml"
CONFIG_IN_CONTAINER = "/etc/regretflow/regretflow.toml"
STATE_IN_CONTAINER = "/var/lib/regretflow"


def config():
    return load_config(CONFIG_FILE)


def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s():
    return {d["kind"] + "/" + d["metadata"]["name"]: d for d in yaml.safe_load_all((DEPLOY / "k8s" / "regretflow.yaml").read_text())}


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def under(path: str, directory: str) -> bool:
    return PurePosixPath(directory) in PurePosixPath(path).parents or path == directory


# -- the config they all mount --------------------------------------------------------------


def test_container_config_validates_with_regretflows_checkers():
    cfg = config()
    assert cfg.source.type == "kafka" and cfg.answers.type == "kafka" and cfg.dead_letters.type == "kafka"
    source = kafka_settings(cfg.source.options, SOURCE_OPTIONS)
    assert source["topics"] == ["regretflow-events"]
    for sink in (cfg.answers, cfg.dead_letters):
        kafka_settings(sink.options, SINK_OPTIONS)
    assert cfg.metrics.host == "0.0.0.0", "inside a container the metrics port must be reachable from outside"
    assert cfg.runtime.stop_at_end is False
    assert under(cfg.checkpoint.dir, STATE_IN_CONTAINER) and under(cfg.metrics.log_path, STATE_IN_CONTAINER)


def test_cli_exits_2_on_a_config_error_as_the_systemd_unit_expects(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.m]\nlearner = "nope"\nfeatures = ["x"]\n')
    out = subprocess.run([REGRETFLOW, "run", "--config", str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "models.m.learner" in out.stderr


# -- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_slim_non_root_warmed_with_healthcheck():
    ins = dockerfile_instructions()
    base = [rest for word, rest in ins if word == "ARG" and rest.startswith("BASE_IMAGE=")]
    assert base and re.fullmatch(r"BASE_IMAGE=python:3\.11-slim[\w.-]*@sha256:[0-9a-f]{64}", base[0]), (
        "the default base is pinned by digest"
    )
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms and all(f.startswith("${BASE_IMAGE}") for f in froms), "every stage on the one base a build may replace"
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the daemon runs as a non-root user"
    after_user = final[[i for i, (w, r) in enumerate(final) if w == "USER"][-1] :]
    warm = [rest for word, rest in after_user if word == "RUN"]
    assert any("warm_up" in r for r in warm) and any("regretflow demo" in r for r in warm), "numba cache warmed as the runtime user"
    port = config().metrics.port
    assert ("EXPOSE", str(port)) in final
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert health and f"127.0.0.1:{port}/healthz" in health[0]
    assert ("STOPSIGNAL", "SIGTERM") in final
    cmd = [rest for word, rest in final if word == "CMD"][-1]
    assert f'"{CONFIG_IN_CONTAINER}"' in cmd
    assert ("COPY", f"deploy/docker/regretflow.toml {CONFIG_IN_CONTAINER}") in final
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "NUMBA_CACHE_DIR=" in env


def test_dockerfile_installs_only_locked_hashed_dependencies():
    runs = " ".join(rest for word, rest in dockerfile_instructions() if word == "RUN")
    pip_calls = re.findall(r"pip (?:wheel|install)[^&]*", runs)
    assert pip_calls
    for call in pip_calls:
        # from the lock with hashes, or offline (--no-index) from the wheels checked against it
        assert "--require-hashes" in call or ("--no-index" in call and ("--no-deps" in call or "setuptools wheel" in call)), call
    lock = (DEPLOY / "container" / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^ ]+) \\$", lock, flags=re.M))
    blocks = re.split(r"\n(?=[a-z0-9])", lock.split("\n", 1)[1])
    assert all("--hash=sha256:" in b for b in blocks if re.match(r"[a-z0-9]", b)), "every pin carries its hashes"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["confluent"]
    names = {re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0].lower().replace("_", "-") for req in wanted}
    assert names <= pins.keys(), f"not in the lock (bash deploy/container/lock.sh): {sorted(names - pins.keys())}"
    assert {"setuptools", "wheel"} <= pins.keys(), "the wheel is built offline with locked build tools"


def test_dockerfile_runs_read_only_under_any_uid_in_group_0():
    ins = dockerfile_instructions()
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    assert ("ENTRYPOINT", '["regretflow-entrypoint"]') in final
    entrypoint = DEPLOY / "container" / "entrypoint.sh"
    assert ("COPY", "deploy/container/entrypoint.sh /usr/local/bin/regretflow-entrypoint") in final
    assert os.access(entrypoint, os.X_OK), "COPY keeps the file's mode: it must be committed executable"
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "--gid 0" in runs and "chmod -R g=u /opt/regretflow/numba-cache" in runs
    env = " ".join(rest for word, rest in final if word == "ENV")
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", env).group(1)
    assert f"baked={cache}" in entrypoint.read_text(), "the entrypoint copies the cache the image bakes"
    sh = subprocess.run(["sh", "-n", str(entrypoint)], capture_output=True, text=True)
    assert sh.returncode == 0, sh.stderr


def test_dockerfile_copies_only_paths_that_exist():
    for word, rest in dockerfile_instructions():
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            for src in sources:
                assert (REPO / src).exists(), src


# -- compose ---------------------------------------------------------------------------------


def test_compose_runs_kafka_in_kraft_mode_regretflow_prometheus_and_grafana():
    services = compose()["services"]
    assert {"kafka", "regretflow", "prometheus", "grafana"} <= set(services)
    kafka = services["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"] and "zookeeper" not in str(services).lower()
    cfg = config()
    host, _, port = cfg.source.options["bootstrap_servers"].partition(":")
    assert host == "kafka" and f"PLAINTEXT://kafka:{port}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    init = " ".join(services["kafka-init"]["command"])
    for topic in (*cfg.source.options["topics"], cfg.answers.options["topic"], cfg.dead_letters.options["topic"]):
        assert topic + ":" in init, f"kafka-init does not create {topic}"


def test_compose_regretflow_mounts_the_config_and_state_where_the_image_expects():
    rf = compose()["services"]["regretflow"]
    assert rf["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / rf["build"]["context"] / rf["build"]["dockerfile"]).exists()
    mounts = {m.split(":")[1]: m.split(":")[0] for m in rf["volumes"]}
    assert (DEPLOY / mounts[CONFIG_IN_CONTAINER]).resolve() == CONFIG_FILE.resolve()
    assert STATE_IN_CONTAINER in mounts
    assert rf["command"][-1] == CONFIG_IN_CONTAINER
    port = config().metrics.port
    assert f"127.0.0.1:{port}:{port}" in rf["ports"]
    assert rf["stop_signal"] == "SIGTERM"


def test_compose_prometheus_scrapes_regretflow_and_grafana_provisions_the_dashboard():
    services = compose()["services"]
    prom = services["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prom["volumes"]}
    assert (DEPLOY / mounts["/etc/prometheus"]).resolve() == (DEPLOY / "prometheus").resolve()
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"regretflow:{config().metrics.port}"]
    prom_port = re.search(r"--web.listen-address=:(\d+)", " ".join(prom["command"])).group(1)

    grafana = services["grafana"]
    gm = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    assert (DEPLOY / gm["/etc/grafana/provisioning"]).resolve() == (DEPLOY / "grafana" / "provisioning").resolve()
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "regretflow.yml").read_text())["providers"][0]
    dash_dir = provider["options"]["path"]
    assert (DEPLOY / gm[dash_dir]).resolve() == (DEPLOY / "grafana" / "dashboards").resolve()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dash_dir + "/") and (DEPLOY / "grafana" / "dashboards" / PurePosixPath(home).name).exists()
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == f"http://prometheus:{prom_port}"
    assert ds["jsonData"]["timeInterval"] == scrape["scrape_configs"][0]["scrape_interval"]


# -- Kubernetes --------------------------------------------------------------------------------


def test_k8s_configmap_carries_the_same_config():
    cm = k8s()["ConfigMap/regretflow-config"]
    assert cm["data"]["regretflow.toml"] == CONFIG_FILE.read_text()
    tomllib.loads(cm["data"]["regretflow.toml"])


def test_k8s_statefulset_mounts_config_and_checkpoint_volume_with_probes():
    objs = k8s()
    sts = objs["StatefulSet/regretflow"]
    pod = sts["spec"]["template"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert objs[f"Service/{sts['spec']['serviceName']}"]["spec"]["clusterIP"] == "None"
    (container,) = pod["spec"]["containers"]
    assert container["args"][-1] == CONFIG_IN_CONTAINER
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    config_volume = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == "regretflow-config"][0]
    assert mounts[config_volume] == str(PurePosixPath(CONFIG_IN_CONTAINER).parent)
    claims = [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]]
    cfg = config()
    state_mounts = [mounts[c] for c in claims]
    assert any(under(cfg.checkpoint.dir, m) for m in state_mounts), "checkpoint.dir must be on the claimed volume"
    port = container["ports"][0]
    assert port["containerPort"] == cfg.metrics.port and port["name"] == "metrics"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 30


def test_k8s_metrics_service_points_at_the_metrics_port():
    objs = k8s()
    svc = objs["Service/regretflow-metrics"]
    pod_labels = objs["StatefulSet/regretflow"]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["port"] == config().metrics.port and port["targetPort"] == "metrics"
    assert svc["metadata"]["annotations"]["prometheus.io/port"] == str(config().metrics.port)


K8S_VERSIONS = ["1.35.0", "1.36.0", "1.37.0"]  # the Kubernetes releases in support when this was written


def test_k8s_manifests_validate_strictly_against_the_supported_api_versions():
    validate = [
        sys.executable,
        "-c",
        "import sys; sys.argv[0] = 'kubernetes-validate'; from kubernetes_validate.__main__ import main; sys.exit(main())",
    ]
    for version in K8S_VERSIONS:
        out = subprocess.run(
            [*validate, "--strict", "--quiet", "-k", version, str(DEPLOY / "k8s" / "regretflow.yaml")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, (version, out.stdout, out.stderr)


def test_k8s_pods_meet_the_restricted_pod_security_standard():
    pod = k8s()["StatefulSet/regretflow"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["initContainers"] + pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError", c["name"]
        assert "seccompProfile" not in sc or sc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
        # read-only root: the entrypoint copies numba's cache to /tmp, which must be a volume
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[mounts["/tmp"]], c["name"]
    allowed = {"configMap", "emptyDir", "persistentVolumeClaim", "secret", "projected", "downwardAPI", "csi", "ephemeral"}
    assert all(set(v) - {"name"} <= allowed for v in pod["volumes"])
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")


def test_k8s_config_checksum_annotation_matches_the_config():
    objs = k8s()
    text = objs["ConfigMap/regretflow-config"]["data"]["regretflow.toml"]
    annotations = objs["StatefulSet/regretflow"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["regretflow.dev/config-sha256"] == hashlib.sha256(text.encode()).hexdigest(), (
        "config changed: put `sha256sum deploy/docker/regretflow.toml` in the pod template's annotation"
    )


def test_k8s_declares_a_metrics_port_per_worker_and_a_disruption_budget():
    objs = k8s()
    container = objs["StatefulSet/regretflow"]["spec"]["template"]["spec"]["containers"][0]
    ports = [p["containerPort"] for p in container["ports"]]
    base = config().metrics.port
    assert ports == list(range(base, base + len(ports))) and len(ports) >= 2, "worker i of --workers N serves base+i"
    workers = re.search(r"--workers\s+(\d+)", " ".join(container["args"]))
    assert int(workers.group(1)) <= len(ports) if workers else True
    headless = {p["port"] for p in objs["Service/regretflow"]["spec"]["ports"]}
    assert headless == set(ports)
    pdb = objs["PodDisruptionBudget/regretflow"]
    pod_labels = objs["StatefulSet/regretflow"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"].get("maxUnavailable") == 1 or "minAvailable" in pdb["spec"]


def test_k8s_per_pod_checkpoint_volumes_allow_one_replica_only():
    sts = k8s()["StatefulSet/regretflow"]["spec"]
    per_pod = [c for c in sts.get("volumeClaimTemplates", []) if "ReadWriteMany" not in c["spec"]["accessModes"]]
    if per_pod:  # partition state moves between pods on a rebalance: each pod's own claim would split it
        assert sts["replicas"] == 1, "replicas > 1 needs the shared ReadWriteMany variant (see the manifest's header)"
    text = (DEPLOY / "k8s" / "regretflow.yaml").read_text()
    assert "ReadWriteMany" in text and "claimName" in text, "the shared-volume variant is documented"


# -- compose, as podman-compose reads it --------------------------------------------------------


def test_compose_parses_with_podman_compose():
    tool = [sys.executable, "-c", "import sys; from podman_compose import main; sys.argv[0] = 'podman-compose'; sys.exit(main())"]
    out = subprocess.run([*tool, "-f", "compose.yaml", "config"], capture_output=True, text=True, timeout=120, cwd=DEPLOY)
    assert out.returncode == 0, out.stderr
    parsed = yaml.safe_load(out.stdout)
    assert {"kafka", "regretflow", "prometheus", "alertmanager", "grafana"} <= set(parsed["services"])


def test_compose_images_pinned_restarts_bounded_and_kafka_storage_on_its_volume():
    services = compose()["services"]
    for name, svc in services.items():
        if "build" not in svc:
            assert re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", svc["image"]), f"{name}: pin the image by tag and digest"
        restart = str(svc.get("restart", "no"))
        assert restart == "no" or re.fullmatch(r"on-failure(:\d+)?", restart), f"{name}: {restart} would restart a config error forever"
        long_running = name not in ("kafka-init", "regretflow-check")
        assert restart.startswith("on-failure") if long_running else restart == "no", name
    kafka = services["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in kafka["volumes"]}
    assert log_dirs in mounts and mounts[log_dirs] in compose()["volumes"], "Kafka's log dirs on its named volume"


def test_compose_alertmanager_receives_prometheus_alerts():
    services = compose()["services"]
    am = services["alertmanager"]
    port = re.search(r"--web.listen-address=:(\d+)", " ".join(am["command"])).group(1)
    config_path = re.search(r"--config.file=(\S+)", " ".join(am["command"])).group(1)
    mounts = {m.split(":")[1]: m.split(":")[0] for m in am["volumes"]}
    local = DEPLOY / mounts[str(PurePosixPath(config_path).parent)] / PurePosixPath(config_path).name
    routes = yaml.safe_load(local.read_text())
    receivers = {r["name"] for r in routes["receivers"]}
    assert routes["route"]["receiver"] in receivers and all(r["receiver"] in receivers for r in routes["route"].get("routes", []))
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for am_cfg in scrape["alerting"]["alertmanagers"] for sc in am_cfg["static_configs"] for t in sc["targets"]]
    assert targets == [f"alertmanager:{port}"]
    assert "alertmanager" in services["prometheus"]["depends_on"]
    assert scrape["rule_files"] == ["alerts.yml"], "the alert rules that reach it"


# -- systemd -------------------------------------------------------------------------------------


def test_systemd_unit_runs_the_daemon_and_stops_it_with_sigterm():
    path = DEPLOY / "systemd" / "regretflow.service"
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(path)
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/bin/regretflow") and argv[1:3] == ["run", "--config"]
    assert service["User"] not in ("root", "0")
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 30
    assert service["Restart"] == "on-failure" and service["RestartPreventExitStatus"] == "2"
    state = "/var/lib/" + service["StateDirectory"]
    assert under(config().checkpoint.dir, state) and state in service["ReadWritePaths"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert service["UMask"] == "0027"
    install = path.read_text().split("[Unit]")[0]
    assert "-m 0640" in install and "-m 0644 deploy/docker" not in install, "the installed config may hold sasl_password"
    analyze = shutil.which("systemd-analyze")
    if analyze:  # also the real parser, where the machine has it
        out = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
        problems = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip() and "is not executable" not in ln]
        assert not problems, problems


def test_systemd_unit_sandbox_scores_3_or_less():
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: deploy/container/install-host.sh installs it"
    path = DEPLOY / "systemd" / "regretflow.service"
    out = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(path)], capture_output=True, text=True, timeout=120)
    score = re.search(r"Overall exposure level for regretflow\.service: ([\d.]+)", out.stdout + out.stderr)
    assert score, out.stdout[-2000:] + out.stderr[-2000:]
    assert float(score.group(1)) <= 3.0, out.stdout


# -- a config error stops before the worker starts, and is not restarted forever -----------------


def _run_check_argv(argv: list[str], config_text: str, tmp_path) -> subprocess.CompletedProcess:
    """Run a deploy file's check command here, on its config with the container paths moved under tmp_path."""
    assert argv[:2] == ["run", "--check"] and argv[-2:] == ["--config", CONFIG_IN_CONTAINER], argv
    local = tmp_path / "regretflow.toml"
    local.write_text(config_text.replace(STATE_IN_CONTAINER, str(tmp_path / "state")).replace("port = 9108", "port = 0"))
    return subprocess.run([REGRETFLOW, *argv[:-1], str(local)], capture_output=True, text=True, timeout=120)


def test_k8s_init_container_checks_the_config_with_the_workers_mounts(tmp_path):
    pod = k8s()["StatefulSet/regretflow"]["spec"]["template"]["spec"]
    (check,) = pod["initContainers"]
    (worker,) = pod["containers"]
    assert check["image"] == worker["image"]
    assert check["terminationMessagePolicy"] == "FallbackToLogsOnError", "kubectl describe must show the problems"
    assert worker["terminationMessagePolicy"] == "FallbackToLogsOnError"
    as_mounted = lambda c: {(m["name"], m["mountPath"]) for m in c["volumeMounts"]}  # noqa: E731
    assert as_mounted(check) == as_mounted(worker), "the check must see the config and the state volume the worker sees"
    text = k8s()["ConfigMap/regretflow-config"]["data"]["regretflow.toml"]
    ok = _run_check_argv(check["args"], text, tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("config OK: 1 model charges (ridge); source kafka"), ok.stderr
    bad = _run_check_argv(check["args"], text.replace("params = { lam = 1.0 }", "params = { lamda = 1.0 }"), tmp_path)
    assert bad.returncode == 2 and "models.charges.params.lamda: unknown parameter; did you mean 'lam'?" in bad.stderr


def test_compose_checks_the_config_first_and_never_restarts_the_daemon_forever(tmp_path):
    services = compose()["services"]
    check, rf = services["regretflow-check"], services["regretflow"]
    assert rf["depends_on"]["regretflow-check"] == {"condition": "service_completed_successfully"}
    assert check["restart"] == "no" and check["image"] == rf["image"]
    assert set(check["volumes"]) == set(rf["volumes"])
    assert re.fullmatch(r"on-failure:\d+", rf["restart"]), "Docker restarts exit 2 too: the daemon's restarts must be bounded"
    ok = _run_check_argv(check["command"], CONFIG_FILE.read_text(), tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("config OK:"), ok.stderr
