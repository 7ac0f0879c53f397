"""What learns: one module per family, numba kernels beside each.

``LEARNERS`` maps the family name a config uses to the class; the engine builds
models from it and knows nothing else about a family than its role: ``ROLES[cls.task]``
is the protocol the class satisfies (see :mod:`regretflow.learners.contract`).
"""

from .analytic_ridge import AnalyticRidgeClassifier
from .contextual_baselines import EpsilonGreedy, LinUCBDisjoint
from .contract import ROLES, BanditPolicy, Decision, FairPolicy, Observed, PanelDecision, SupervisedEstimator
from .dynamical import BudgetPolytope, DynLinUCB, SystemBounds
from .fair import FairExp2, FairFTPL, FullInformationFairExp2, OneSidedExp2, greedy_separator
from .groupwise import ALWAYS_ON, GroupwiseRegressor
from .linear_bandits import ActionVectorLinUCB, BatchedExp3, DiscountedLinUCB, Exp3, LinUCB
from .neural import OnlineNeuralRegressor
from .neural_bandit import NeuralFastCB, NeuralRidgeCB, NeuralSquareCB
from .omd import OptimisticOMDRegressor
from .ridge import OnlineRidge

LEARNERS = {
    "ridge": OnlineRidge,
    "omd": OptimisticOMDRegressor,
    "groupwise": GroupwiseRegressor,
    "analytic-ridge": AnalyticRidgeClassifier,
    "neural": OnlineNeuralRegressor,
    "neural-squarecb": NeuralSquareCB,
    "neural-fastcb": NeuralFastCB,
    "neural-ridge-cb": NeuralRidgeCB,
    "linucb-disjoint": LinUCBDisjoint,
    "epsilon-greedy": EpsilonGreedy,
    "dynlin-ucb": DynLinUCB,
    "action-vector-linucb": ActionVectorLinUCB,
    "linucb": LinUCB,  # deprecated name of action-vector-linucb: warns when built
    "d-linucb": DiscountedLinUCB,
    "exp3": Exp3,
    "batched-exp3": BatchedExp3,
    "fair-exp2": FairExp2,
    "fair-ftpl": FairFTPL,
    "one-sided-exp2": OneSidedExp2,
}

__all__ = [
    "LEARNERS",
    "ROLES",
    "SupervisedEstimator",
    "BanditPolicy",
    "FairPolicy",
    "Observed",
    "Decision",
    "PanelDecision",
    "OnlineRidge",
    "OptimisticOMDRegressor",
    "GroupwiseRegressor",
    "DynLinUCB",
    "ActionVectorLinUCB",
    "LinUCB",
    "DiscountedLinUCB",
    "Exp3",
    "BatchedExp3",
    "BudgetPolytope",
    "SystemBounds",
    "FairExp2",
    "FairFTPL",
    "OneSidedExp2",
    "AnalyticRidgeClassifier",
    "OnlineNeuralRegressor",
    "NeuralSquareCB",
    "NeuralFastCB",
    "NeuralRidgeCB",
    "LinUCBDisjoint",
    "EpsilonGreedy",
]
# not families the engine serves, but public for simulations and the reproductions
__all__ += ["FullInformationFairExp2", "greedy_separator", "ALWAYS_ON"]
