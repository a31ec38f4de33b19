"""Root conftest: import lamina once before doctest collection, so that with
--import-mode=importlib a module's doctests use the same module objects as the package."""

import importlib.util

import lamina  # noqa: F401

# Doctests of modules whose optional dependencies are missing cannot run (the tests of
# those modules skip themselves); lamina imports them lazily, so nothing else breaks.
collect_ignore = [] if importlib.util.find_spec("fastapi") else ["lamina/serving/server.py"]
