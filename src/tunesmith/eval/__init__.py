"""Evaluation: validation loss/perplexity, QA accuracy, and before/after reports."""

from tunesmith.eval.run import compare_table, evaluate_model

__all__ = ["compare_table", "evaluate_model"]
