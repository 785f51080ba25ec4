"""tunesmith: fine-tune open LLMs into domain specialists.

Data in, a better model out, measured and served. The command line (`tunesmith --help`) is the
main entry point; the package layers are, from the bottom up (docs/design.md):

    config, errors, layout  <  data, models, runtime  <  methods  <  stages, eval, export, search
                            <  commands, serve, benchmark  <  cli

Nothing imports upward, and no module imports itself back through another (tests/test_architecture.py).
"""

__version__ = "0.1.0"
