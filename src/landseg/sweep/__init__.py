"""``landseg sweep``: hyper-parameter search over ordinary training runs, with Optuna.

- ``space``: the search space file (config keys with ranges or choices), checked against the config
  schema before any trial runs;
- ``pruning``: the Lightning callback that reports each validation mIoU to Optuna and stops a trial
  its pruner calls hopeless;
- ``objective``: one trial: R seeded ``landseg train`` runs in ``DIR/trials/NNNN[-rK]``, their mean
  best validation mIoU;
- ``study``: storage (SQLite, any Optuna URL, journal files), the worker loop, dead-trial recovery,
  local worker processes and Dask;
- ``outputs``: the trials table, the best configuration, plots and the HTML report;
- ``run``: ``run_sweep``, the command's work: checks, progress, workers, outputs.

Nothing is imported here, so ``landseg --help`` does not load Optuna. See ``docs/SWEEP.md``.
"""
