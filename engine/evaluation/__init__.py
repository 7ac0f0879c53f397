"""How well a model does: regret and accuracy trackers, off-policy estimators,
the fairness comparator's linear program, and offline replay of logged events."""
