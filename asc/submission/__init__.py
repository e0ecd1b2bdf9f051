"""Evaluation-set predictions and challenge submission packages."""
