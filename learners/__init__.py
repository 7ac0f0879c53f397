"""What learns: one module per family, numba kernels beside each.

``LEARNERS`` maps the family name a config uses to the class; the engine builds
models from it and knows nothing else about a family.
"""

from .ridge import OnlineRidge

LEARNERS = {
    "ridge": OnlineRidge,
}

__all__ = ["LEARNERS", "OnlineRidge"]
