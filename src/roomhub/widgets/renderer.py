"""The renderer: pgwidgets-js, the JavaScript library of pgwidgets, from its pip package.

roomhub does not ship a widget renderer of its own. pgwidgets-js (``pgwidgets-js`` on
PyPI, BSD-3) renders all 52 widget classes of pgwidgets' protocol; its pip package is
static files (``pgwidgets_js.get_static_path()``) plus the table of those classes
(``pgwidgets_js.defs.WIDGETS``: constructor arguments, options, methods, callbacks), which
pgwidgets documents as the source for drivers in other languages. roomhub serves the
first and reads the second.

The package declares Python >= 3.12 but holds no code that needs it, so on Python 3.11
it is installed with ``pip install --no-deps --ignore-requires-python pgwidgets-js==0.4.2``
(``scripts/setup-pgwidgets.sh``, run by ``make setup``).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

PACKAGE = "pgwidgets-js"
VERSION = "0.4.2"  # the version roomhub is tested with
INSTALL = (
    f"pip install --no-deps --ignore-requires-python {PACKAGE}=={VERSION} "
    "(or scripts/setup-pgwidgets.sh)"
)


class RendererMissing(RuntimeError):
    """pgwidgets-js is not installed in roomhub's environment; the message says how to install it."""


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RendererMissing(
            f"the widgets face renders with {PACKAGE}, which is not installed ({exc}): {INSTALL}"
        ) from None


def static_dir() -> Path:
    """pgwidgets-js's static directory (``Widgets.js``, ``Widgets.css``, ``modules/``, ``icons/``).

    Raises :class:`RendererMissing`.
    """
    path = Path(_module("pgwidgets_js").get_static_path())
    if not (path / "Widgets.js").is_file():
        raise RendererMissing(f"{PACKAGE} at {path} has no Widgets.js: reinstall it: {INSTALL}")
    return path


@functools.cache
def widget_defs() -> dict[str, dict[str, Any]]:
    """pgwidgets-js's widget classes: ``{class: {"base", "args", "options", "methods", "callbacks"}}``.

    ``base`` is ``"widget"``, ``"container"`` or ``"callback"`` (non-visual); ``methods``
    maps a method name to its parameter names, without the methods every widget of that
    base has (:func:`method_params` adds them). Raises :class:`RendererMissing`.
    """
    return dict(_module("pgwidgets_js.defs").WIDGETS)


@functools.cache
def _base_methods() -> dict[str, dict[str, list[str]]]:
    defs = _module("pgwidgets_js.defs")
    return {
        "widget": defs.WIDGET_METHODS,
        "container": defs.CONTAINER_METHODS,
        "callback": defs.CALLBACK_METHODS,
    }


def method_params(cls: str, method: str) -> list[str] | None:
    """The parameter names of ``cls.method`` in pgwidgets-js, or None if it does not declare it."""
    defn = widget_defs().get(cls)
    if defn is None:
        return None
    params = defn.get("methods", {}).get(method)
    if params is None:
        params = _base_methods().get(defn.get("base", "widget"), {}).get(method)
    return None if params is None else list(params)
