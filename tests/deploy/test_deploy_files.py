"""deploy/: the Dockerfile, compose file, Kubernetes manifests and systemd unit parse, and agree.

No Docker engine or cluster runs here, so the test checks what can be checked: every
file parses, the config they mount validates with regretflow's own config checker and
the Kafka connector's option checker, and the ports, paths and names agree across files.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
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
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the daemon runs as a non-root user"
    after_user = final[[i for i, (w, r) in enumerate(final) if w == "USER"][-1]:]
    warm = [rest for word, rest in after_user if word == "RUN"]
    assert any("warm_up" in r for r in warm) and any("regretflow demo" in r for r in warm), "numba cache warmed as the runtime user"
    port = config().metrics.port
    assert ("EXPOSE", str(port)) in final
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert health and f"127.0.0.1:{port}/healthz" in health[0]
    assert ("STOPSIGNAL", "SIGTERM") in final
    cmd = [rest for word, rest in final if word == "CMD"][-1]
    assert f'"{CONFIG_IN_CONTAINER}"' in cmd
    assert (f"COPY", f"deploy/docker/regretflow.toml {CONFIG_IN_CONTAINER}") in final
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "NUMBA_CACHE_DIR=" in env


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
    (port,) = container["ports"]
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
    analyze = shutil.which("systemd-analyze")
    if analyze:  # also the real parser, where the machine has it
        out = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
        problems = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip() and "is not executable" not in ln]
        assert not problems, problems


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
