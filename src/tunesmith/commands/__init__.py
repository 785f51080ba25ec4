"""The verbs of the `tunesmith` command, one module per group; `cli.py` is their table.

Each module offers `register(verbs)` (adds its sub-commands to the parser, importing nothing heavy)
and the functions those sub-commands run. The orchestration lives here, so `train`, `search`,
`bench` and the web page reuse one train flow (`commands.train.train_and_compare`).
"""
