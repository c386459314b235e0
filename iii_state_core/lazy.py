"""Lazy re-exports: a package names what it exports and imports each name on first use.

Used by the core's ``__init__`` and by plugins whose ``__init__`` must not import their client
library at plugin load (pluggy imports every installed plugin eagerly).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that imports ``exports[name]`` (a submodule) on first use.

    :param package: the package's ``__name__``.
    :param exports: public name -> the submodule (relative to ``package``) that defines it.
    :returns: the function to bind as the package's ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    return __getattr__
