"""Early-stopping rules: pure decisions from per-epoch metric histories (no I/O, no loop).

``EarlyStopping`` (the spec settings) builds a ``Rule``; ``Rule.decide(trial, others,
budget)`` says whether ``trial`` stops at the epoch it has just reported.
"""

from controller_policy.early_stopping.asha import HalvingRule, rungs
from controller_policy.early_stopping.base import Curve, Decision, Rule, oriented, shown
from controller_policy.early_stopping.median import MedianRule
from controller_policy.early_stopping.settings import EarlyStopping, StoppedReward

__all__ = [
    "Curve", "Decision", "EarlyStopping", "HalvingRule", "MedianRule", "Rule", "StoppedReward",
    "oriented", "rungs", "shown",
]  # fmt: skip
