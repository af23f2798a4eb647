"""Areas and accuracy a report can stand on: probability samples of a map and the design-based estimates
from their reference labels (``landseg sample``, ``landseg assess``; docs/ASSESS.md).

The estimators work on plain arrays and can be called from Python without files::

    from landseg.assess import stratified_estimates
    result = stratified_estimates(strata, map_class, reference, {1: 40000, 2: 30000})
"""

from landseg.assess.estimators import (
    AccuracyEstimates,
    Estimate,
    allocate,
    sample_size_for_overall_accuracy,
    sample_size_for_users_accuracy,
    stratified_estimates,
)

__all__ = [
    "AccuracyEstimates",
    "Estimate",
    "allocate",
    "sample_size_for_overall_accuracy",
    "sample_size_for_users_accuracy",
    "stratified_estimates",
]
