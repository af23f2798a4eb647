"""Scale-out on existing engines: Dask distributed for preparation and prediction, Lightning DDP for training.

- ``cluster``: a Dask client for a scheduler address or a local cluster, and the worker plugin that
  loads the models once per worker;
- ``predict``: ``landseg predict --dask/--workers``: scenes and column blocks of scenes as tasks,
  assembled into the same COG the single-process engine writes;
- ``prepare``: ``landseg prepare --dask/--workers``: alignment, chip cutting and statistics of many
  scenes in parallel, statistics merged exactly;
- ``sampling``: the unpadded validation sampler that keeps DDP validation exact.

Nothing is imported here, so importing one submodule does not import Dask for the others.
See ``docs/DISTRIBUTED.md``.
"""
