"""What the training workers' forkserver imports once, before it forks any worker (worker.py names this
module as its only preload; nothing else imports it): torch (with torch._dynamo, below) and lm, through
worker.py, and one rule.

The rule: a worker never runs the parent's `__main__` again. multiprocessing makes a child import its
parent's main module (for pickled functions defined there), but under Streamlit `__main__` is the page
script being run (Home.py): a worker would import Streamlit and run the app's pages before training. Our
workers' functions all live in importable modules, so the forkserver's children skip that step.
"""

from multiprocessing import spawn

# torch imports its compiler front end (torch._dynamo, ~1.2 s) lazily, at the first op on `meta` tensors that
# goes through one of its Python decompositions (autodiff's shape inference runs such ops: a 0-d mul). Every
# worker's first batch paid that; imported here, the forks inherit it.
import torch._dynamo  # noqa: F401

import playground.train.worker  # noqa: F401  (torch, lm and the worker's loop, imported once for every fork)


def _skip_main(*args) -> None:
    """Nothing: see the module docstring."""


spawn._fixup_main_from_path = _skip_main
spawn._fixup_main_from_name = _skip_main
