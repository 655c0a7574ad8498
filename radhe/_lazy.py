"""Lazy public names of radhe's packages: heavy dependencies load on first use of a name, not on import."""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str], submodules: tuple[str, ...] = ()):
    """Module-level ``__getattr__`` and ``__dir__`` for ``package`` (PEP 562).

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict
        Module (absolute, or relative to ``package`` when it has no dot) → the public names it defines.
    submodules : tuple of str
        Subpackages reachable as attributes without an explicit import.

    Returns
    -------
    (__getattr__, __dir__)
        To assign at the package's top level; a resolved name is cached in the package's namespace.
    """

    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module if "." in module else f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        # the public surface: what the package exports (not its own imports such as ``lazy_exports``)
        defined = {name for name in vars(sys.modules[package]) if name in home or name == "__version__"}
        return sorted(defined | set(home) | set(submodules))

    return __getattr__, __dir__
