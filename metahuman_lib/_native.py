"""The optional C module (``metahuman_lib/_kernels.c``): the workbench's innermost loops.

Why optional: it is built when the package is installed with a C compiler at hand; without one
the install still succeeds and the callers use their numpy or Python code, which gives the same
results (the tests compare both). :data:`kernels` is None then, and also when the module was
built from an older source (an editable install does not rebuild it when the source changes).
"""

from __future__ import annotations

import logging
from types import ModuleType

KERNELS_VERSION = 5
"""The ``VERSION`` of ``_kernels.c`` this code expects."""


def load_kernels() -> ModuleType | None:
    """The C module when it is built and current; else None (a stale one is reported)."""
    try:
        from metahuman_lib import _kernels
    except ImportError:
        return None
    if getattr(_kernels, "VERSION", None) != KERNELS_VERSION:
        logging.getLogger(__name__).warning(
            "metahuman_lib/_kernels was built from an older _kernels.c: run `make venv` (or "
            "`pip install -e .`) again; the slower numpy and Python code runs meanwhile")
        return None
    return _kernels


kernels = load_kernels()
