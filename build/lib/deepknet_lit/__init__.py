# Written by hand, not by nbdev-export (which creates this file only when it is missing and never rewrites it): the
# package version, read by setuptools (`version = {attr = ...}` in pyproject.toml), and the top-level API documented
# in nbs/index.ipynb. The API names load on first use (PEP 562 module __getattr__), so `import deepknet_lit` stays
# fast and imports neither torch nor pymatgen.
__version__ = "0.1.0"

import sys as _sys
import types as _types

_API = {  # name -> (module, attribute)
    "point_cloud": ("diffraction", "point_cloud"),
    "point_clouds": ("diffraction", "point_clouds"),
    "load_task": ("tasks", "load_task"),
    "DiffractionFeaturizer": ("featurizer", "DiffractionFeaturizer"),
    "load_model": ("pretrained", "load_model"),
    "predict": ("predict", "predict_structures"),  # `dk.predict` is the module `deepknet_lit.predict`, callable
}
__all__ = ["__version__", *_API]


class _CallableModule(_types.ModuleType):
    "A submodule that shares its name with an API function (`predict`): calling the module calls the function."
    def __call__(self, *args, **kwargs):
        return getattr(self, _API[self.__name__.rpartition(".")[2]][1])(*args, **kwargs)


class _Package(_types.ModuleType):
    "The package module: when the import system binds a submodule named like an API function, make it callable."
    def __setattr__(self, name, value):
        if isinstance(value, _types.ModuleType) and name in _API and _API[name][0] == name:
            value.__class__ = _CallableModule
            import inspect  # so help() and inspect.signature() show the function's arguments
            value.__signature__ = inspect.signature(getattr(value, _API[name][1]))
        super().__setattr__(name, value)


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'deepknet_lit' has no attribute {name!r}")
    from importlib import import_module
    module, attr = _API[name]
    value = import_module(f"{__name__}.{module}")  # binds the submodule (made callable if it is an API name)
    value = value if module == name else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_API])


_sys.modules[__name__].__class__ = _Package
