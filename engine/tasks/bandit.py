"""Contextual bandits: a ``decide`` picks an action, a ``feedback`` brings its reward.

The tracker (:class:`~regretflow.engine.evaluation.regret.BanditRegret`) sums the
observed reward, the exact pseudo-regret when the source supplies expected rewards, and
off-policy estimates of reference policies from the logged probability vectors (and the
learner's reward predictions, for doubly-robust estimates).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from regretflow.engine.evaluation.regret import BanditRegret
from regretflow.engine.observability.plotting import COLOURS, _fmt, _grid, _legend_below, _png, _pyplot
from regretflow.engine.runtime.dead_letters import BadEvent
from regretflow.engine.runtime.events import Event
from regretflow.engine.runtime.joins import JoinEntry, JoinPayload, register_payload
from regretflow.engine.tasks.base import Output, ShardView, Task, column, fmt

if TYPE_CHECKING:
    from regretflow.engine.config import ModelSpec
    from regretflow.engine.observability.metrics import Metrics
    from regretflow.engine.observability.plotting import ModelSeries

_SUMMED = ("count", "reward", "pseudo_regret", "expected_pseudo_regret", "pseudo_count", "regret_vs_best_constant")
_ESTIMATES = ("ips", "ips_low", "ips_high", "snips", "snips_low", "snips_high")


@register_payload
class DecidePayload(JoinPayload):
    """A bandit decision waiting for its reward: the context, the choice and what off-policy evaluation needs.

    >>> p = DecidePayload(None, None, 1, 0.75, 2, None, np.array([0.25, 0.75]), None, -1)
    >>> q = DecidePayload.from_columns(p.columns())
    >>> q.action, q.probabilities.tolist(), q.predicted_rewards
    (1, [0.25, 0.75], None)
    """

    __slots__ = ("x", "groups", "action", "probability", "n_choices", "actions", "probabilities", "predicted_rewards", "ticket")
    CODE: ClassVar[int] = 1

    def __init__(
        self,
        x: np.ndarray | None,
        groups: np.ndarray | None,
        action: int,
        probability: float,
        n_choices: int,
        actions: np.ndarray | None,
        probabilities: np.ndarray | None,
        predicted_rewards: np.ndarray | None,
        ticket: int,
    ):
        self.x = x
        self.groups = groups
        self.action = action
        self.probability = probability
        self.n_choices = n_choices
        self.actions = actions  # per-action feature rows, when the decide offered them
        self.probabilities = probabilities  # the whole probability vector over the offered actions
        self.predicted_rewards = predicted_rewards  # the learner's reward model, when it has one
        self.ticket = ticket  # what the learner wants back with the reward (-1: nothing)

    def columns(self) -> dict[str, Any]:
        logged = None
        if self.probabilities is not None:
            logged = (
                self.probabilities[None, :] if self.predicted_rewards is None else np.vstack([self.probabilities, self.predicted_rewards])
            )
        return {
            "x": self.x,
            "groups": self.groups,
            "action": self.action,
            "probability": self.probability,
            "n_choices": self.n_choices,
            "actions": self.actions,
            "extra": logged,
            "decision": self.ticket,
        }

    @classmethod
    def from_columns(cls, columns: dict[str, Any]) -> DecidePayload:
        logged = columns["extra"]
        probabilities = None if logged is None else logged[0]
        predicted = None if logged is None or len(logged) < 2 else logged[1]
        return cls(
            columns["x"],
            columns["groups"],
            columns["action"],
            columns["probability"],
            columns["n_choices"],
            columns["actions"],
            probabilities,
            predicted,
            columns["decision"],
        )


class Choice(NamedTuple):
    """A bandit's decision as the engine uses it (the learner API's ``Decision``).

    >>> Choice(1, np.array([0.5, 0.5]), None, -1).action
    1
    """

    action: int
    probabilities: np.ndarray
    predicted_rewards: np.ndarray | None
    ticket: int


def decide(learner: Any, x: np.ndarray | None, actions: np.ndarray | None) -> Choice:
    """The learner's decision for a context (and offered actions)."""
    d = learner.decide(x, actions)
    predicted_rewards = d.predicted_rewards
    return Choice(
        int(d.action),
        np.asarray(d.probabilities, dtype=np.float64),
        None if predicted_rewards is None else np.asarray(predicted_rewards, dtype=np.float64),
        int(d.ticket),
    )


def learn(learner: Any, p: DecidePayload, reward: float) -> None:
    """Hand the learner the reward of decision ``p`` (with the ticket its decision carried)."""
    learner.learn(p.x, p.action, reward, p.probability, actions=p.actions, ticket=p.ticket)


def describe_action(learner: Any, action: int) -> list[float] | None:
    """The vector behind an action (a budget, ...), for learners that have one."""
    vector = learner.describe_action(action)
    return None if vector is None else [float(v) for v in vector]


class BanditTask(Task):
    """``decide`` answered with an action and its probabilities; ``feedback`` carries the reward.

    >>> BanditTask().summary_rows({"bandit": {"count": 2, "mean_reward": 0.5, "pseudo_regret": 0.0}}, {})[0]
    ['rounds', 'mean reward', 'pseudo-regret', 'uniform SNIPS', 'greedy SNIPS [95%]']
    """

    name: ClassVar[str] = "bandit"
    kinds: ClassVar[frozenset[str]] = frozenset({"decide", "feedback"})

    def make_tracker(self, spec: ModelSpec) -> BanditRegret:
        return BanditRegret(spec.n_actions)

    # -- events -------------------------------------------------------------------------------
    def check(self, shard: ShardView, ev: Event) -> None:
        spec, name = shard.spec, shard.spec.name
        if ev.kind == "decide":
            shard.check_new_id(ev)
            # a learner sets itself up from its first decide: one of the wrong shape
            # must not get that far, or it would fix the shape for every later one
            if spec.n_actions and ev.actions is not None:
                raise BadEvent(
                    "bad_actions", f"model {name!r} declares n_actions = {spec.n_actions} (a shared context): a decide carries no 'actions'"
                )
            if spec.features and ev.x is None and ev.actions is None:
                raise BadEvent(
                    "missing_field", f"model {name!r} declares {len(spec.features)} features: a decide carries them as 'features'"
                )
            if spec.features and ev.actions is not None and ev.actions.shape[1] != len(spec.features):
                raise BadEvent("bad_actions", f"each action has {ev.actions.shape[1]} values, the model declares {len(spec.features)}")
            check_expected(shard, ev)
        else:
            shard.pending_reply(ev, "predict or decide", "feedback to")
            if ev.reward is None:
                raise BadEvent("feedback_mismatch", f"feedback to decide {ev.ref!r} must carry a reward")

    def handle(self, shard: ShardView, ev: Event, out: Output) -> None:
        if ev.kind == "decide":
            self._decide(shard, ev, out)
            return
        entry = shard.joins.take(str(ev.ref))
        assert entry is not None and ev.reward is not None  # checked by check()
        self._learn_reward(shard, entry, ev.reward)

    def on_expired(self, shard: ShardView, entries: list[JoinEntry], out: Output) -> None:
        default = shard.spec.joins.default_reward
        if default is None:
            return
        shard.flush(out)
        for e in entries:
            self._learn_reward(shard, e, default)

    def _decide(self, shard: ShardView, ev: Event, out: Output) -> None:
        n_choices = len(ev.actions) if ev.actions is not None else (shard.spec.n_actions or 0)
        choice = decide(shard.learner, ev.x, ev.actions)
        action, probs, predicted = choice.action, choice.probabilities, choice.predicted_rewards
        n_choices = n_choices or len(probs)
        shard.tracker.record_decision(ev.expected, action, probs)
        payload = DecidePayload(ev.x, ev.groups, action, float(probs[action]), n_choices, ev.actions, probs, predicted, choice.ticket)
        shard.request(ev, payload, out)
        shard.check_outputs(f"decide {ev.id!r}", probs, predicted)
        answer: dict[str, Any] = {
            "id": ev.id,
            "model": shard.spec.name,
            "kind": "decide",
            "action": action,
            "probability": float(probs[action]),
            "probabilities": probs.tolist(),
            "model_version": shard.learner.n_updates,
        }
        if predicted is not None:
            answer["predicted_rewards"] = predicted.tolist()
        vector = describe_action(shard.learner, action)
        if vector is not None:
            answer["action_vector"] = vector
        out.answer(ev, answer)

    def _learn_reward(self, shard: ShardView, entry: JoinEntry, reward: float) -> None:
        p = entry.payload
        assert isinstance(p, DecidePayload)
        learn(shard.learner, p, reward)
        shard.tracker.update_one(
            p.action,
            p.probability,
            reward,
            p.n_choices,
            p.probabilities,
            None if p.probabilities is None else p.predicted_rewards,
        )

    # -- measuring ----------------------------------------------------------------------------
    def summarize(self, shards: Sequence[ShardView]) -> dict[str, Any]:
        if len(shards) == 1:
            return {"bandit": shards[0].tracker.summary()}
        parts = [s.tracker.summary() for s in shards]
        total = dict(parts[0])
        for key in _SUMMED:
            total[key] = sum(p.get(key, 0) for p in parts)
        total["mean_reward"] = total["reward"] / total["count"] if total["count"] else 0.0
        return {"bandit": total}

    def publish(self, metrics: Metrics, model: str, summary: dict[str, Any]) -> None:
        m = metrics
        b = summary["bandit"]
        m.cumulative_reward.labels(model=model).set(b["reward"])
        m.feedback_rounds.labels(model=model).set(b["count"])
        m.pseudo_regret.labels(model=model).set(b["pseudo_regret"])
        m.expected_pseudo_regret.labels(model=model).set(b["expected_pseudo_regret"])
        for policy in ("uniform", "best_constant", "greedy"):
            if policy in b:
                for est in ("ips", "snips", "dr"):
                    if est not in b[policy]:
                        continue
                    m.policy_value.labels(model=model, policy=policy, estimator=est).set(b[policy][est])
                    m.policy_value_low.labels(model=model, policy=policy, estimator=est).set(b[policy][f"{est}_low"])
                    m.policy_value_high.labels(model=model, policy=policy, estimator=est).set(b[policy][f"{est}_high"])
        if "regret_vs_best_constant" in b:
            m.regret_vs_best_constant.labels(model=model).set(b["regret_vs_best_constant"])

    # -- showing ------------------------------------------------------------------------------
    def summary_rows(self, summary: dict[str, Any], extra: dict[str, Any]) -> tuple[list[str], list[str]]:
        b = summary["bandit"]
        g = summary.get("learner_gauges", {})
        greedy = b.get("greedy", {})
        if "dynlin_regret_envelope" in g:
            return (
                ["rounds", "mean reward", "pseudo-regret", "epochs", "regret envelope"],
                [
                    str(b["count"]),
                    fmt(b["mean_reward"]),
                    fmt(b["pseudo_regret"], ".3f"),
                    fmt(g.get("dynlin_epoch"), ".0f"),
                    fmt(g.get("dynlin_regret_envelope"), ".1f"),
                ],
            )
        return (
            ["rounds", "mean reward", "pseudo-regret", "uniform SNIPS", "greedy SNIPS [95%]"],
            [
                str(b["count"]),
                fmt(b["mean_reward"]),
                fmt(b["pseudo_regret"], ".1f"),
                fmt(b.get("uniform", {}).get("snips")),
                f"{fmt(greedy.get('snips'), '.3f')} [{fmt(greedy.get('snips_low'), '.3f')}, {fmt(greedy.get('snips_high'), '.3f')}]"
                if greedy
                else "-",
            ],
        )

    def replay_lines(self, model: str, summary: dict[str, Any]) -> list[str]:
        b = summary["bandit"]
        lines = [f"\nmodel {model}: {b['count']} feedbacks, mean reward {b['mean_reward']:.4f}, pseudo-regret {b['pseudo_regret']:.3f}"]
        for policy in ("uniform", "best_constant"):
            if policy in b:
                e = b[policy]
                lines.append(
                    f"  {policy:<14} IPS {e['ips']:.4f} [{e['ips_low']:.4f}, {e['ips_high']:.4f}]"
                    f"  SNIPS {e['snips']:.4f} [{e['snips_low']:.4f}, {e['snips_high']:.4f}]"
                )
        return lines

    def progress_figure(self, model: str, summary: dict[str, Any]) -> str | None:
        b = summary["bandit"]
        return f"{model} pseudo-regret={b['pseudo_regret']:.1f}" if b.get("pseudo_count") else None

    def live_panels(self, summary: dict[str, Any], monitor: dict[str, Any] | None) -> list[dict[str, Any]]:
        b = summary["bandit"]
        g = summary.get("learner_gauges", {})
        panels: list[dict[str, Any]] = [
            {
                "title": "cumulative reward and pseudo-regret",
                "unit": "reward",
                "series": {
                    "cumulative reward": b.get("reward"),
                    "pseudo-regret": b.get("pseudo_regret") if b.get("pseudo_count") else None,
                },
            }
        ]
        exploration = {}
        if "greedy_probability" in g:
            exploration["probability of the greedy action"] = g["greedy_probability"]
        if "dynlin_estimated_gap" in g:
            exploration["estimated gap of the held action"] = g["dynlin_estimated_gap"]
        if exploration:
            panels.append(
                {"title": "exploration", "unit": "probability" if "greedy_probability" in g else "reward per round", "series": exploration}
            )
        values = {"observed mean reward": b.get("mean_reward")}
        for policy in ("greedy", "uniform", "best_constant"):
            if policy in b:
                values[f"{policy.replace('_', ' ')} policy (SNIPS)"] = b[policy].get("snips")
        panels.append({"title": "off-policy value of reference policies", "unit": "mean reward per round", "series": values})
        return panels

    def series(self, summaries: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], np.ndarray]:
        bs = [s.get("bandit") or {} for s in summaries]
        values = {
            key: column(bs, key) for key in ("count", "reward", "mean_reward", "pseudo_regret", "pseudo_count", "regret_vs_best_constant")
        }
        for policy in ("uniform", "best_constant"):
            ps = [b.get(policy) or {} for b in bs]
            for key in _ESTIMATES:
                values[f"{policy}.{key}"] = column(ps, key)
        return values, {}, values["count"]

    def figures(self, series: ModelSeries) -> list[tuple[str, bytes]]:
        return [(f"bandit-{series.name}", bandit_figure(series))]

    def final_table(self, series: ModelSeries) -> str:

        b = series.final.get("bandit", {})
        rows = [
            ("feedback rounds", b.get("count")),
            ("cumulative reward", b.get("reward")),
            ("mean reward", b.get("mean_reward")),
            ("pseudo-regret", b.get("pseudo_regret")),
            ("est. regret vs best constant", b.get("regret_vs_best_constant")),
        ]
        for policy in ("uniform", "best_constant"):
            e = b.get(policy) or {}
            if e:
                rows.append(
                    (
                        f"{policy.replace('_', ' ')} SNIPS [95%]",
                        f"{_fmt(e.get('snips'))} [{_fmt(e.get('snips_low'))}, {_fmt(e.get('snips_high'))}]",
                    )
                )
        return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows) + "</table>"


def check_expected(shard: ShardView, ev: Event) -> None:
    """A decide's expected rewards, one per offered action (bandit and fair decides)."""
    n_choices = len(ev.actions) if ev.actions is not None else shard.spec.n_actions
    if ev.expected is not None and n_choices and len(ev.expected) != n_choices:
        raise BadEvent("bad_actions", f"{len(ev.expected)} expected rewards for {n_choices} actions")


def bandit_figure(s: ModelSeries) -> bytes:
    """Regret (pseudo and estimated), cumulative reward, and off-policy values with intervals."""

    plt = _pyplot()
    fig, axes = _grid(plt, 3, height=4.3)
    v, n = s.values, s.rounds
    if np.nanmax(np.nan_to_num(v["pseudo_count"], nan=0.0), initial=0.0) > 0:
        axes[0].plot(n, v["pseudo_regret"], color=COLOURS[0], lw=2, label="pseudo-regret (exact)")
    axes[0].plot(n, v["regret_vs_best_constant"], color=COLOURS[6], lw=1.5, label="estimated regret vs best constant action (SNIPS)")
    axes[0].axhline(0, color="grey", lw=0.6)
    axes[0].set(title="cumulative regret", xlabel="feedback rounds", ylabel="regret (reward units)")
    _legend_below(axes[0], ncol=1)
    axes[1].plot(n, v["reward"], color=COLOURS[3], lw=2, label="cumulative reward")
    axes[1].set(title="cumulative reward", xlabel="feedback rounds", ylabel="reward (sum)")
    _legend_below(axes[1], ncol=1)
    axes[2].plot(n, v["mean_reward"], color=COLOURS[0], lw=2, label="this policy (observed)")
    for policy, color in (("uniform", COLOURS[1]), ("best_constant", COLOURS[2])):
        for est, ls in (("snips", "-"), ("ips", ":")):
            axes[2].plot(n, v[f"{policy}.{est}"], color=color, ls=ls, lw=1.3, label=f"{policy.replace('_', ' ')} policy, {est.upper()}")
        axes[2].fill_between(n, v[f"{policy}.snips_low"], v[f"{policy}.snips_high"], color=color, alpha=0.15, lw=0)
    axes[2].set(title="mean reward of reference policies (95% bands)", xlabel="feedback rounds", ylabel="reward per round")
    _legend_below(axes[2], ncol=2)
    fig.suptitle(f"model {s.name} ({s.learner}): regret, reward and off-policy values", fontsize=12)
    fig.tight_layout()
    return _png(fig)
