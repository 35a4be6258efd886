"""Package facades whose heavy names are imported on first use (PEP 562).

A light install (``pip install infertrail``) has no NumPy, pyarrow or Grafana SDK; a facade that
imported them eagerly would make its whole package unusable there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` resolving ``exports`` (name -> module) on first access."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module), name)

    return __getattr__
