"""Methods: what each run adds to the loss, behind one interface and a registry."""

from mimmx.methods import catalogue  # noqa: F401  (fills the registry)
from mimmx.methods.base import METHODS, Dims, Method, build_method, register

__all__ = ["METHODS", "Dims", "Method", "build_method", "register"]
