"""Evaluation: validation loss/perplexity, QA accuracy, the suites of the `eval:` section (generation
metrics, multiple choice, consistency, edge cases, a pairwise judge, lm-eval tasks; `eval.suites`) and
before/after reports (table and HTML). `eval.run.evaluate_model` measures one model as a config says.

The package imports nothing on its own, so that the command line's parser (which reads the suite
records' flags) starts without loading torch."""
