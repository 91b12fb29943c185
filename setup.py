"""Build of the optional C kernels (everything else is in pyproject.toml).

``metahuman_lib._kernels`` speeds up deduplication; it is optional: without a C compiler the
install still succeeds and the workbench uses the numpy code that gives the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("metahuman_lib._kernels", ["metahuman_lib/_kernels.c"],
                             extra_compile_args=["-O3"], optional=True)])
