"""Honest benchmarks: latency percentiles, throughput, memory, energy and accuracy of any artifact.

* :mod:`~edgevae.bench.stats`: nearest-rank percentiles on raw samples (never sigma-clipped).
* :mod:`~edgevae.bench.timing`: warm-up, then configurations interleaved in short rounds; disturbed
  rounds (other processes using the CPU) are redone and counted.
* :mod:`~edgevae.bench.env`: the environment every result records (CPU, GPU, versions, Jetson).
* :mod:`~edgevae.bench.power`: INA3221 sysfs and tegrastats power sampling -> W and mJ/inference.
* :mod:`~edgevae.bench.projection`: roofline *estimates* for Jetson modules (never measurements).
* :mod:`~edgevae.bench.report`: the result schema, JSON/JSONL/markdown/rich table.
* :mod:`~edgevae.bench.driver`: ``benchmark(artifacts, BenchConfig) -> BenchResult``.
"""
