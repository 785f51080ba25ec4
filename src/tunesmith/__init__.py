"""tunesmith: fine-tune open LLMs into domain specialists.

Data in, a better model out, measured and served. The command line (`tunesmith --help`) is the
main entry point; the package layers are, from the bottom up:

    config  <  data, models, methods, runtime  <  stages, eval, export  <  cli, ui, serve

Nothing imports upward.
"""

__version__ = "0.1.0"
