"""The main job, ``edgevae pipeline``: data, train, eval, export, quantize, bench, report."""
