"""Evaluation: validation loss/perplexity, QA accuracy, the suites of the `eval:` section (generation
metrics, multiple choice, consistency, edge cases) and before/after reports (table and HTML)."""

from tunesmith.eval.run import compare_table, evaluate_model

__all__ = ["compare_table", "evaluate_model"]
