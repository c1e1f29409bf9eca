"""The trial SDK: what a training script needs to take part in a kubenas search.

A script reads its assignment and reports its metrics; kubenas computes the reward,
retries, resumes and keeps the results (docs/trial-sdk.md)::

    from kubenas_trial import Trial

    with Trial.from_env() as trial:
        model = build(trial.genotype)
        for epoch in range(trial.next_epoch, trial.training.epochs):
            ...
            trial.report_epoch(epoch, val_accuracy=acc, loss=loss)
        trial.report_final()

Only the standard library and pydantic (the trial contract) are imported here — never
torch — so non-PyTorch scripts and the ``kubenas-report`` command load it in a blink.
"""

from kubenas_trial.assignment import TrialInputError, load_trial
from kubenas_trial.delivery import Reporter, RetryPolicy
from kubenas_trial.trial import ReportError, Trial

__all__ = ["ReportError", "Reporter", "RetryPolicy", "Trial", "TrialInputError", "load_trial"]
