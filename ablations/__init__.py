"""Ablation methods, each registered by name. ``make_method("scaled_resample[s=0.5]")`` builds one.

The default leaderboard set is ``DEFAULT_METHODS`` (with ``ESTIMATOR_METHODS``, the attribution
estimates of zero, mean and resample, ``ablations/estimators.py``); ``SCALE_SWEEP_METHODS`` is the scaled
resample sweep of InterpBench's case-3 study.
"""

from ablations.base import REGISTRY, AblationMethod, NodeBatch, make_method, register
from ablations.task_data import TaskData
from ablations import basic, estimators, optimal, pca  # noqa: F401  (registers the built-ins)
from ablations.basic import SCALE_SWEEP

DEFAULT_METHODS = [
    "zero",
    "mean",
    "position_mean",
    "cf_mean",
    "resample",
    "resample_same_length",
    "cf_patch",
    "scaled_resample[s=0.5]",
    "pca_self[k=1,high]",
    "pca_self[k=1,complement]",
    "pca_resample[k=1,high]",
    "pca_resample[k=1,complement]",
    "noise",
    "directional",
    "optimal",
    "optimal_position",
]
# attribution patching: linear estimates (and AtP*'s GradDrop score) of zero / mean / resample, scored beside their exact effects
ESTIMATOR_METHODS = [f"{e}[{m}{extra}]" for e, extra in (("atp", ""), ("atp_ig", ",steps=5"), ("atp_gd", ""))
                     for m in ("zero", "mean", "resample")]
DEFAULT_METHODS += ESTIMATOR_METHODS
SCALE_SWEEP_METHODS = [f"scaled_resample[s={s:g}]" for s in SCALE_SWEEP]

__all__ = [
    "REGISTRY", "AblationMethod", "NodeBatch", "TaskData", "make_method", "register",
    "DEFAULT_METHODS", "ESTIMATOR_METHODS", "SCALE_SWEEP_METHODS",
]
