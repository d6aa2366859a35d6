"""Side-by-side performance harness: ipcluster against ipyparallel, dask.distributed and Ray.

Run it with ``python -m benchmarks`` (``--help`` lists the options); ``docs/performance.md``
describes the workloads. The package is split by process:

- ``cli``, ``venvs``, ``supervise``, ``report``: the orchestrating process (this interpreter). It
  creates the peers' virtualenvs, starts one worker subprocess per system, bounds each workload
  in time, and writes the table, JSON and chart.
- ``worker``, ``measure``, ``tasks``, ``systems/``: what runs inside a system's own interpreter
  (a peer's virtualenv, or this interpreter for ipcluster). They import only the standard
  library, numpy, psutil and the system under test.
- ``simengine``, ``scale``: workload 7, lightweight simulated engines speaking ipcluster's wire
  protocol against a real controller.
"""
