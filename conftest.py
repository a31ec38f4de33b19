"""Root conftest: import lamina once before doctest collection, so that with
--import-mode=importlib a module's doctests use the same module objects as the package."""

import lamina  # noqa: F401
