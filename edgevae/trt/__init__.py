"""TensorRT engines for edgevae models: build, inspect, plugins, trtexec.

Nothing here imports TensorRT at import time: ``tensorrt`` is reached only through
``edgevae._util.lazy.require("tensorrt")`` inside the functions that need it, so ``import edgevae``
and ``edgevae --help`` work on machines without TensorRT or a GPU.

Modules:

* :mod:`edgevae.trt.config`: ``EngineConfig`` (precision, mode, batch profile, workspace, ...).
* :mod:`edgevae.trt.build`: ``build_engine(export_dir, config)`` (one code path for 10.x/11.x).
* :mod:`edgevae.trt.manifest`: engine manifests and the compatibility check.
* :mod:`edgevae.trt.versions`: TensorRT/CUDA/JetPack/L4T versions and version gates.
* :mod:`edgevae.trt.probe`: GPU, driver, Jetson probing (the only hardware probe).
* :mod:`edgevae.trt.profiles`: optimization-profile shapes.
* :mod:`edgevae.trt.export_dir`: what the builder reads from an export directory.
* :mod:`edgevae.trt.plugin_graph`: the plugin-mode ONNX (fusion/scoring as custom ops).
* :mod:`edgevae.trt.plugin_kernels`, :mod:`edgevae.trt.plugins`: PTX and AOT plugin registration.
* :mod:`edgevae.trt.trtexec`: trtexec flags that mean the same on 10.x and 11.x; JSON parsing.

The runtime is :class:`edgevae.runtime.trt_runner.TrtRunner`; the CLI is ``edgevae build`` and
``edgevae doctor``.
"""
