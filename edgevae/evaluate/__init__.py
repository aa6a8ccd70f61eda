"""Evaluation (``edgevae eval``): frame-level anomaly metrics overall, per anomaly type, per score
part and with each camera masked out; imputation PSNR of each camera vs baselines; figures.

* :mod:`edgevae.evaluate.metrics`: pure NumPy/scikit-learn metrics (AUROC, AUPRC, EER, PSNR).
* :mod:`edgevae.evaluate.plots`: ROC, score timeline and reconstruction figures (matplotlib Agg).
* :mod:`edgevae.evaluate.run`: the stage ``evaluate(run_dir, data_dir, EvalConfig) -> out dir``;
  its module docstring documents ``metrics.json``.
"""

from edgevae.evaluate.run import EvalConfig, evaluate

__all__ = ["EvalConfig", "evaluate"]
