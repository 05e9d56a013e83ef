"""Metrics, threshold tuning, the one label-decision rule, `labelwise evaluate` and its HTML report.

Nothing here imports a model: :func:`labelwise.evaluation.evaluate.evaluate` takes any object with
``predict_proba``, ``labels`` and ``thresholds`` (a :class:`labelwise.Classifier`).
"""
