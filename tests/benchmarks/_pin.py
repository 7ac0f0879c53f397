"""One BLAS/OpenMP thread for every benchmark: import this before numpy.

The machine is shared and the figures compare code paths side by side; a BLAS pool
that grows to every core would time the pool, not the code. The environment
variables only bite if they are set before numpy loads its BLAS, so every benchmark
imports this module first (``import _pin`` works because a script's own folder is
on ``sys.path``). threadpoolctl, when installed, also caps libraries already loaded.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

for _name in THREAD_VARIABLES:
    os.environ[_name] = "1"

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # optional: the variables above already did the work
    PINNED_BY = "environment"
else:
    import numpy  # noqa: F401  (loads BLAS so that the limit below has a library to cap)

    threadpool_limits(limits=1)
    PINNED_BY = "environment + threadpoolctl"


def describe() -> str:
    """One line for a benchmark's header: how threads were pinned."""
    return f"BLAS/OpenMP threads pinned to 1 ({PINNED_BY})"
