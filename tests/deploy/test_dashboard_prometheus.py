"""Every PromQL expression of the Grafana dashboard returns data from a real Prometheus.

The test starts, on 127.0.0.1 and free ports:

1. ``regretflow demo`` (a subprocess: one model of every family, among them the
   regression models on the Medical costs data, groups declared on sex, smoker,
   region, age and BMI);
2. a second engine in this process, on a stream of ``decide`` / ``feedback`` events
   from a simulator that knows the expected rewards, with a bandit model of the first
   bandit family registered in ``regretflow.learners.LEARNERS`` that builds from a
   model declaration with features and ``n_actions`` alone (checked now, at test time;
   otherwise a seeded uniform-policy test double with one learner gauge: the bandit
   panels read engine-level metrics, the same whatever the learner; families such as
   DynLin-UCB need an action polytope and a horizon in their params), a
   classification model when a classification family builds the same way,
   checkpoints on, some bad events, unanswered requests and a small join store;
3. a third engine in this process, ``deploy/examples/fairness.toml``: the Adult fairness
   simulator plays its rounds against a fair model, then the engine keeps serving the
   simulator's own figures (``regretflow_simulator_*``);
4. Debian's Prometheus with its own config and data directory, scraping all three every
   second and evaluating ``deploy/prometheus/alerts.yml``.

Then it evaluates every expression of ``deploy/grafana/dashboards/regretflow.json``
through Prometheus's HTTP API, with the template variables at "All", and fails for
every expression that returns nothing. The only expressions allowed to be empty are
listed in :func:`allowed_empty`, each with the reason, checked at run time, that it
cannot have data in this run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest

from regretflow.connectors.memory import MemorySink
from regretflow.connectors.simulators.loop import TeeSink
from regretflow.engine.cli.daemon import open_source
from regretflow.engine.cli.demo import ThrottledSource
from regretflow.engine.config import load_config, parse_config
from regretflow.engine.evaluation.fairness_lp import FairnessMonitor
from regretflow.engine.observability.metrics import Metrics, MonitorCollector
from regretflow.engine.runtime.loop import Engine
from regretflow.learners import LEARNERS
from tests.conftest import REGRETFLOW, REPO, UniformPolicy

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "regretflow.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
# Grafana replaces these before a query reaches Prometheus; "All" is allValue ".*".
VARIABLES = {"$__rate_interval": "30s", "${model}": ".*", "$model": ".*", "${group}": ".*", "$group": ".*"}
# Metric families the engine does not export yet; the dashboard already has their panels.
PLANNED = {"regretflow_class_accuracy", "regretflow_consumer_lag", "regretflow_rebalances_total"}
BANDIT_FEATURES = ["x0", "x1", "x2", "x3"]
N_ACTIONS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query target, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((p["title"], t["refId"], t["expr"]))

    walk(dashboard["panels"])
    return out


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown template variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"regretflow_[a-z_]+", expr))


# -- the second engine: bandit (and classification) models ---------------------------------


class GaugedUniformPolicy(UniformPolicy):
    """The conftest uniform policy, declaring one learner gauge as the contract allows."""

    GAUGES = {"greedy_probability": "Probability of the greedy action at the last decision (test double: uniform)"}

    def gauges(self) -> dict[str, float]:
        return {"greedy_probability": 1.0 / self.n_actions}


def registered_family(task: str) -> str | None:
    """The first registered family of ``task`` that the engine can build from the second
    engine's model declaration (features, ``n_actions``, groups; no params) and that
    answers a first request; linucb first when registered."""
    from regretflow.engine.learner_factory import build_learner

    names = sorted((n for n, cls in LEARNERS.items() if getattr(cls, "task", "regression") == task), key=lambda n: (n != "linucb", n))
    for name in names:
        try:  # parse_config builds the learner too: a family that needs params is refused there
            spec = parse_config({"models": {"probe": {"learner": name, "features": BANDIT_FEATURES, "n_actions": N_ACTIONS}}}).models[
                "probe"
            ]
            learner = build_learner(spec)
            x = np.zeros(len(BANDIT_FEATURES))
            if task == "bandit":
                learner.act(x, None)
            else:
                learner.predict_many(x[None, :])
        except Exception:  # needs params or a context of another shape: not this run's model
            continue
        return name
    return None


def declares_violation_gauge(cls) -> bool:
    names = list(getattr(cls, "GAUGES", {})) + list(getattr(cls, "GROUP_GAUGES", {}))
    return any("violation" in n for n in names)


FAIR_FEATURES = [f"z{i}" for i in range(4)]


def second_engine_events(classification: bool, n_rounds: int = 900, seed: int = 0, fairness: bool = False) -> list[bytes]:
    """Decides with exact expected rewards, their feedback two rounds later (one in seven
    never answered, so windows expire), a burst of unanswered decides that overflows the
    join store, bad events of three kinds, and classification observes when asked for."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(N_ACTIONS, len(BANDIT_FEATURES)))
    out, waiting = [], []
    for t in range(n_rounds):
        x = rng.normal(size=len(BANDIT_FEATURES))
        expected = 1.0 / (1.0 + np.exp(-weights @ x))
        segment = "a" if x[0] > 0 else "b"
        out.append(
            orjson.dumps(
                {
                    "id": f"d{t}",
                    "model": "offers",
                    "kind": "decide",
                    "features": x.tolist(),
                    "attributes": {"segment": segment},
                    "expected_rewards": expected.tolist(),
                }
            )
        )
        if t % 7:
            # the reward does not depend on the action taken here: the engine joins, it does not simulate
            waiting.append((f"d{t}", float(rng.random() < expected.mean())))
        if len(waiting) > 2:
            ref, reward = waiting.pop(0)
            out.append(orjson.dumps({"id": f"f{t}", "model": "offers", "kind": "feedback", "ref": ref, "reward": reward}))
        if t == n_rounds // 2:
            for b in range(12):  # more than joins.max_pending at once: evictions
                out.append(orjson.dumps({"id": f"burst{b}", "model": "offers", "kind": "decide", "features": x.tolist()}))
        if t % 50 == 0:
            out.extend(
                [
                    b"{not json",
                    orjson.dumps({"id": f"u{t}", "model": "nope", "kind": "observe"}),
                    orjson.dumps({"id": f"m{t}", "model": "offers", "kind": "decide", "features": [1.0]}),
                ]
            )
        if fairness:
            # k = 4 applicants; a panel flags pairs; no feedback (it depends on the decisions): windows expire
            people = rng.random(size=(4, len(FAIR_FEATURES)))
            out.append(orjson.dumps({"id": f"q{t}", "model": "lending", "kind": "decide", "actions": people.tolist()}))
            out.append(
                orjson.dumps(
                    {
                        "id": f"a{t}",
                        "model": "lending",
                        "kind": "audit",
                        "ref": f"q{t}",
                        "violations": [[0, 1, 0], [0, 1, 1], [2, 3, 2]],
                        "panel_size": 3,
                    }
                )
            )
        if classification:
            label = "pos" if x[1] > 0 else ("neg" if x[2] > 0 else "other")
            out.append(
                orjson.dumps(
                    {
                        "id": f"c{t}",
                        "model": "classes",
                        "kind": "observe",
                        "features": x.tolist(),
                        "attributes": {"segment": segment},
                        "label": label,
                    }
                )
            )
    return out


def n_fair_rounds() -> int:
    return 900


def fairness_family() -> str | None:
    """The registered family whose gauges count fairness violations (fair-exp2 first)."""
    names = sorted((n for n, cls in LEARNERS.items() if declares_violation_gauge(cls)), key=lambda n: (n != "fair-exp2", n))
    return names[0] if names else None


class SecondEngine:
    """An engine in a background thread, serving /metrics on a free port of 127.0.0.1."""

    def __init__(
        self, tmp_path: Path, bandit_family: str, classification_family: str | None, rate: float = 250.0, fairness_family: str | None = None
    ):
        groups = [{"name": "segment", "field": "segment", "values": ["a", "b"]}]
        models = {
            "offers": {
                "learner": bandit_family,
                "features": BANDIT_FEATURES,
                "n_actions": N_ACTIONS,
                "groups": groups,
                "joins": {"ttl_events": 40, "max_pending": 10},
            }
        }
        if classification_family:
            models["classes"] = {"learner": classification_family, "features": BANDIT_FEATURES, "groups": groups}
        if fairness_family:
            models["lending"] = {
                "learner": fairness_family,
                "features": FAIR_FEATURES,
                "joins": {"ttl_events": 20},
                "params": {"horizon": n_fair_rounds(), "seed": 0},
            }
        self.config = parse_config(
            {
                "models": models,
                "runtime": {"batch_size": 32, "batch_timeout_ms": 10.0},
                "checkpoint": {"dir": str(tmp_path / "state"), "every_events": 200, "every_seconds": 1.0},
                "metrics": {"port": 0, "refresh_seconds": 0.2},
            }
        )
        events = second_engine_events(classification=bool(classification_family), fairness=bool(fairness_family))
        self.engine = Engine(self.config, ThrottledSource(events, rate), MemorySink(keep=False), MemorySink(keep=False))
        self.port = self.engine.server.port
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="second-engine", daemon=True)

    def _run(self) -> None:
        try:
            self.engine.run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def start(self) -> SecondEngine:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.engine.stop_requested = True
        self.thread.join(timeout=30)
        self.engine.close()


class FairnessSimulatorEngine:
    """``deploy/examples/fairness.toml`` in this process: the simulator plays its rounds, then the
    engine keeps serving /metrics (the simulator's own figures included) until stopped."""

    def __init__(self, rounds: int = 1500):
        config = load_config(REPO / "deploy" / "examples" / "fairness.toml")
        self.config = dataclasses.replace(
            config,
            metrics=dataclasses.replace(config.metrics, port=0),
            source=dataclasses.replace(config.source, options={**config.source.options, "rounds": rounds}),
        )
        source = open_source(self.config, self.config.source)
        self.engine = Engine(self.config, source, TeeSink(source, MemorySink(keep=False)), MemorySink(keep=False))
        self.port = self.engine.server.port
        self.engine.run()  # about a second: the loop ends when its rounds are played

    def stop(self) -> None:
        self.engine.close()


# -- Prometheus ---------------------------------------------------------------------------------


class Prometheus:
    """Debian's Prometheus on a free port with its own config and data directory."""

    def __init__(self, tmp_path: Path, targets: list[str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {  # JSON is YAML
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(ALERTS)],
                    "scrape_configs": [{"job_name": "regretflow", "static_configs": [{"targets": targets}]}],
                }
            )
        )
        self.log = open(tmp_path / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.tmp_path = tmp_path

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if http_get(self.base + "/-/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("Prometheus did not become ready:\n" + (self.tmp_path / "prometheus.log").read_text()[-3000:])

    def api(self, path: str, **params) -> dict:
        url = f"{self.base}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        status, body = http_get(url)
        reply = json.loads(body)
        assert status == 200 and reply["status"] == "success", f"{path} {params}: {status} {reply}"
        return reply["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """demo + second engine + Prometheus, all running; yields what the tests need."""
    assert os.path.exists(PROMETHEUS), (
        "the Prometheus server is required (Debian package prometheus; tests/install-services.sh installs it)"
    )
    tmp_path = tmp_path_factory.mktemp("dashboard")
    demo_port = free_port()
    demo = subprocess.Popen(
        [REGRETFLOW, "demo", "--passes", "1", "--rate", "250", "--port", str(demo_port), "--no-progress", "--linger", "300"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    bandit_family = registered_family("bandit")
    classification_family = registered_family("classification")
    saved = dict(LEARNERS)
    if bandit_family is None:
        LEARNERS["uniform-test-double"] = GaugedUniformPolicy
        bandit_family = "uniform-test-double"
    second = prom = fair = None
    try:
        second = SecondEngine(tmp_path, bandit_family, classification_family, fairness_family=fairness_family()).start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if http_get(f"http://127.0.0.1:{demo_port}/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if demo.poll() is not None:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the demo never became ready")
        assert demo.poll() is None, "demo exited: " + demo.stderr.read().decode()[-2000:]
        # after the demo is ready: its /readyz answers only while it streams (about 35 s at 250 ev/s), and this
        # engine's first run compiles the fair kernels when numba's cache is cold
        fair = FairnessSimulatorEngine()
        prom = Prometheus(tmp_path, [f"127.0.0.1:{demo_port}", f"127.0.0.1:{second.port}", f"127.0.0.1:{fair.port}"])
        prom.wait_ready()
        yield {
            "prometheus": prom,
            "second": second,
            "demo": demo,
            "bandit_family": bandit_family,
            "classification_family": classification_family,
            "fairness_simulator": fair,
        }
    finally:
        if prom is not None:
            prom.stop()
        if fair is not None:
            fair.stop()
        if second is not None:
            second.stop()
        demo.terminate()
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
        LEARNERS.clear()
        LEARNERS.update(saved)


def allowed_empty(stack) -> dict[str, str]:
    """Metric names (or name fragments) whose panels may be empty in this run, with why.

    Each reason is checked here, now; once it stops holding, the panel must have data.
    """
    engine = stack["second"].engine
    exposition = engine.metrics.exposition().decode()

    def has_samples(name: str) -> bool:
        return any(line.startswith((name + "{", name + " ")) for line in exposition.splitlines())

    allowed = {}
    for name in ("regretflow_consumer_lag", "regretflow_rebalances_total"):
        # Both engines read in-memory sources; per-partition lag exists only for a kafka
        # source (the broker tests of the Kafka daemon check it).
        if not has_samples(name):
            allowed[name] = "exported only by a kafka source; this run has no broker"
    if stack["classification_family"] is None:
        allowed["regretflow_class_accuracy"] = "no classification family is registered in LEARNERS"
    elif not has_samples("regretflow_class_accuracy"):
        allowed["regretflow_class_accuracy"] = "the engine does not export regretflow_class_accuracy yet"
    running = {LEARNERS[s.learner] for s in engine.config.models.values()}
    fairness = sorted(n for n, cls in LEARNERS.items() if declares_violation_gauge(cls))
    if not any(declares_violation_gauge(cls) for cls in running):
        assert not fairness, (
            f"learner families {fairness} declare violation gauges: add a model of one to "
            "SecondEngine so that the fairness panel is checked with data"
        )
        allowed["violation"] = "no registered learner family declares a fairness-violation gauge"
    return allowed


def evaluate_all(prom: Prometheus, expressions) -> dict[tuple[str, str], tuple[str, list]]:
    return {(title, ref): (expr, prom.query(substitute(expr))) for title, ref, expr in expressions}


# -- tests -----------------------------------------------------------------------------------------


def test_every_dashboard_expression_returns_data(stack):
    prom = stack["prometheus"]
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = dashboard_expressions(dashboard)
    assert len(expressions) >= 25
    # Poll until everything has data (rates need two samples after a series appears; the
    # second engine's evictions happen mid-stream), at most 90 s; then judge.
    deadline = time.monotonic() + 90
    while True:
        results = evaluate_all(prom, expressions)
        allowed = allowed_empty(stack)
        missing = {k: v[0] for k, v in results.items() if not v[1] and not any(a in v[0] for a in allowed)}
        if not missing or time.monotonic() > deadline or stack["second"].error is not None:
            break
        time.sleep(1.0)
    assert stack["second"].error is None, f"second engine failed: {stack['second'].error!r}"
    assert not missing, "dashboard expressions without data:\n" + "\n".join(
        f"  {title} [{ref}]: {expr}" for (title, ref), expr in sorted(missing.items())
    )
    # the exceptions are exactly those stated: an allowed expression that has data means
    # the reason no longer holds and the list must shrink
    for (title, ref), (expr, result) in results.items():
        for fragment, reason in allowed.items():
            if fragment in expr:
                assert not result, f"{title} [{ref}] has data although allowed empty ({reason}): shorten the list"
    assert len(allowed) <= 4, allowed


def test_values_are_the_engines_own(stack):
    """Spot checks that the data Prometheus returns is what the engines computed."""
    prom = stack["prometheus"]
    regret = prom.query('regretflow_regret{model="ridge", group="smoker=yes"}')
    assert len(regret) == 1 and np.isfinite(float(regret[0]["value"][1]))
    rounds = prom.query('max_over_time(regretflow_group_rounds{model="ridge", group="all"}[5m])')
    assert 0 < float(rounds[0]["value"][1]) <= 1338
    versions = {r["metric"]["model"] for r in prom.query("regretflow_model_version")}
    assert {"ridge", "offers"} <= versions
    intervals = prom.query('regretflow_policy_value_low{model="offers"} <= regretflow_policy_value{model="offers"}')
    b = stack["second"].engine.summary()["offers"]["bandit"]
    published = {(p, e) for p in ("uniform", "best_constant", "greedy") if p in b for e in ("ips", "snips", "dr") if e in b[p]}
    assert len(published) >= 6  # greedy, uniform and best_constant, by ips and snips at least
    assert {(r["metric"]["policy"], r["metric"]["estimator"]) for r in intervals} == published
    dead = prom.query('sum by (reason) (regretflow_dead_letters_total{model=~"offers|_unknown_"}) > 0')
    assert {r["metric"]["reason"] for r in dead} >= {"not_json", "unknown_model", "missing_features"}
    monitor = stack["fairness_simulator"].engine.source.env.monitor
    auditors = prom.query('regretflow_simulator_auditor_violation_pairs{model="lending"}')
    assert {r["metric"]["auditor"]: float(r["value"][1]) for r in auditors} == {
        name: figures["violation_pairs"] for name, figures in monitor.auditor_gauges().items()
    }
    fair_regret = prom.query('regretflow_simulator_fair_regret{model="lending"}')
    assert len(fair_regret) == 1 and float(fair_regret[0]["value"][1]) == pytest.approx(monitor.fair_regret, rel=1e-12)


def test_template_variables_list_the_models_and_groups(stack):
    prom = stack["prometheus"]
    dashboard = json.loads(DASHBOARD.read_text())
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert m, var["query"]
        values = prom.api(f"label/{m.group(2)}/values", **{"match[]": substitute(m.group(1))})
        assert values, f"variable {var['name']} lists nothing"
        if var["name"] == "model":
            assert {"ridge", "offers"} <= set(values) and "_unknown_" not in values
        if var["name"] == "group":
            assert {"all", "smoker=yes", "age=[18,36)"} <= set(values)


def test_alert_rules_evaluate_without_error_and_targets_are_up(stack):
    prom = stack["prometheus"]
    groups = prom.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 10
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] not in ("ok", "unknown")]
    assert not bad, bad
    deadline = time.monotonic() + 20
    while any(r["health"] == "unknown" for r in rules) and time.monotonic() < deadline:
        time.sleep(1)
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r["health"], r.get("lastError")) for r in rules]
    firing = {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"] if a["state"] == "firing"}
    assert "RegretflowExporterDown" not in firing
    targets = prom.api("targets")["activeTargets"]
    assert len(targets) == 3 and all(t["health"] == "up" for t in targets), targets


# -- the dashboard file itself (no services) --------------------------------------------------------


def _exported_families() -> set[str]:
    """Metric family names the engine registers (histograms with their _bucket/_sum/_count)."""
    text = Metrics(["m"], {"m": ["all"]}).exposition().decode()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
    # and what a fairness simulator's monitor adds (its describe() reads the class's declarations)
    names.update(family.name for family in MonitorCollector("m", FairnessMonitor).describe())
    return names


@pytest.mark.parametrize("panel", [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"], ids=lambda p: p["title"])
def test_panel_has_unit_description_and_known_metrics(panel):
    assert len(panel["description"]) > 40, "every panel says what it shows"
    assert "Unit:" in panel["description"]
    assert panel["fieldConfig"]["defaults"]["unit"], "every panel has a unit"
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert panel["targets"]
    exported = _exported_families()
    for t in panel["targets"]:
        assert t["datasource"] == panel["datasource"]
        for name in metric_names(t["expr"]):
            if name.startswith("regretflow_learner_"):
                continue  # matched by regex over every learner gauge
            assert name in exported or name in PLANNED, f"{name} is neither exported by the engine nor planned"


def test_dashboard_layout_has_no_overlaps_and_covers_the_issue():
    dashboard = json.loads(DASHBOARD.read_text())
    cells = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles))
    text = json.dumps(dashboard)
    for needle in (
        "regretflow_regret{",
        "delta(regretflow_regret",
        "regretflow_mean_loss",
        "regretflow_cumulative_reward",
        "regretflow_policy_value_low",
        "violation",
        "regretflow_simulator_fair_regret",
        "regretflow_simulator_auditor_violation_pairs",
        "regretflow_class_accuracy",
        "regretflow_events_total",
        "sum by (reason)",
        "histogram_quantile(0.5",
        "histogram_quantile(0.99",
        "regretflow_consumer_lag",
        "regretflow_checkpoint_age_seconds",
    ):
        assert needle in text, needle
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "model", "group"]
