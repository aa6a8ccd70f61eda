"""Video analysis with a trained model: the streaming :class:`Analyzer` (embeddable in apps) and
:func:`analyze` (camera files in, ``scores.csv`` / ``timeline.png`` / ``recon.mp4`` /
``summary.json`` out).

Importing this package does not import torch or onnxruntime; building an Analyzer imports the
backend its artifact needs.
"""

from edgevae.analyze.analyzer import Analyzer, Result
from edgevae.analyze.backend import ModelSession
from edgevae.analyze.run import AnalyzeConfig, analyze
from edgevae.analyze.stream import FileStream, Step

__all__ = ["AnalyzeConfig", "Analyzer", "FileStream", "ModelSession", "Result", "Step", "analyze"]
