"""edgevae's custom CUDA kernels (sources in the repository's ``kernels/``), from Python.

Modules (import what you need; nothing heavy is imported here):

* :mod:`~edgevae.kernels.reference`: NumPy references of the three kernels (the math).
* :mod:`~edgevae.kernels.eager`: the eager PyTorch op sequences the kernels replace.
* :mod:`~edgevae.kernels.build`: nvcc -> PTX + cubin per target, with a manifest.
* :mod:`~edgevae.kernels.hostmath`: the kernels' per-element math built with g++ for CPU tests.
* :mod:`~edgevae.kernels.launch`: load and launch with cuda-python (default) or pycuda.
* :mod:`~edgevae.kernels.torch_ops`: ``preprocess``, ``poe_fusion``, ``anomaly_score`` on CUDA
  torch tensors, on PyTorch's current stream (CUDA-graph capturable).
* :mod:`~edgevae.kernels.checks`: random and edge-case checks against the references.

The GPU analyze pipeline built on them is :mod:`edgevae.runtime.gpu_pipeline`.
"""
