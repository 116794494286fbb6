"""What the server knows about widget classes and methods, to answer from state and replay.

Every method call is classified (pure functions, no I/O):

- **setter** (``set_X``, ``show``/``hide``, ``clear``...): recorded as the
  widget's state ``X``; only the latest call per state key is replayed.
- **getter** (``get_X``, ``is_visible``): answered from state ``X`` when it is
  known, else a round trip to the browser.
- **query** (``get_selected``, ``time_left``, ``can_undo``...: what only the
  browser knows, pgwidgets' JS_ONLY methods): always a round trip, never replayed.
- **action** (``popup``, ``set_focus``, ``scroll_to_end``...): sent, never replayed.
- **item** (everything else: ``add_widget``, ``append_row``, ``set_cell``...):
  recorded in call order and replayed in that order.

Constructor arguments and options seed the state (``Label("Hi")`` knows its
text), and browser callbacks update it (a CheckBox's ``activated`` carries
its new state), so getters rarely need the browser.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from .renderer import method_params, widget_defs

Kind = Literal["setter", "getter", "query", "action", "item"]

ACTIONS = frozenset(
    {
        "popup",
        "set_focus",
        "raise_",
        "lower",
        "open",
        "start",
        "stop",
        "cancel",
        "scroll_to_end",
        "scroll_to_top",
        "scroll_to_bottom",
        "scroll_to_path",
        "scroll_to_lineno",
        "toggleContent",
        "save",
        "copy_selection",
    }
)

# Methods whose answer only the browser knows (pgwidgets-python's JS_ONLY methods, 0.4.2).
QUERIES = frozenset(
    {
        "get_element", "get_draw_context", "get_video_element", "get_content_element",
        "get_position", "is_set", "elapsed_time", "time_left", "can_undo", "can_redo",
        "get_cursor", "get_selection", "get_tags_at", "get_duration", "get_paused",
        "get_selected", "get_expanded", "get_collapsed", "get_column_count", "get_row_count",
        "get_widget_at_cell", "get_row_column_count", "get_content_area", "get_alpha",
        "num_children", "is_container", "get_tab_id", "get_child", "index_of", "get_subwin",
        "get_subwindows", "get_configuration", "get_child_size", "get_child_position", "get_icon",
    }
)

# Setters whose state key is not their name's tail.
SETTER_KEYS = {"show": "visible", "hide": "visible", "set_title": "title", "clear": "content"}

# Item methods wiped by a setter that replaces the content (method -> wiped item methods).
_ROWS = frozenset(
    {
        "append_row",
        "insert_row",
        "delete_row",
        "set_cell",
        "update_rows",
        "update_data",
        "add_item",
        "remove_item",
        "remove_items",
        "add_tree",
        "update_tree",
        "delete_tree",
        "expand_item",
        "collapse_item",
    }
)
_TEXT = frozenset({"append_text", "append_html", "insert_alpha", "delete_alpha"})
CONTENT_RESETS: dict[str, frozenset[str]] = {
    "clear": _ROWS | _TEXT,
    "set_rows": _ROWS,
    "set_data": _ROWS,
    "set_tree": _ROWS,
    "set_html": frozenset({"append_html"}),
}
TEXT_RESET_CLASSES = frozenset({"TextArea"})  # their set_text replaces appended text
CHILD_METHODS = frozenset({"add_widget", "insert_widget", "set_widget", "add_button", "add_menu"})
REMOVE_METHODS = frozenset({"remove", "remove_widget"})

# Browser callbacks that report new state: (class, action) -> [(state key, arg index)].
CALLBACK_STATE: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {
    ("CheckBox", "activated"): (("state", 0),),
    ("RadioButton", "activated"): (("state", 0),),
    ("ToggleButton", "activated"): (("state", 0),),
    ("MenuAction", "activated"): (("checked", 0),),
    ("TextEntry", "activated"): (("text", 0),),
    ("TextEntry", "modified"): (("text", 0),),
    ("TextArea", "modified"): (("text", 0),),
    ("ComboBox", "activated"): (("index", 0), ("text", 1)),
    ("SpinBox", "activated"): (("value", 0),),
    ("Slider", "activated"): (("value", 0),),
    ("TabWidget", "page-switch"): (("index", 1),),
    ("Expander", "toggled"): (("collapsed", 0),),
    ("Splitter", "sizing"): (("sizes", 0),),
    # The rest of pgwidgets-python's WIDGET_CALLBACK_SYNC (0.4.2).
    ("Dial", "activated"): (("value", 0),),
    ("ScrollBar", "activated"): (("scroll_percent", 0),),
    ("TextEntrySet", "activated"): (("text", 0),),
    ("TextEntrySet", "modified"): (("text", 0),),
    ("TextArea", "activated"): (("text", 0),),
    ("ComboBox", "modified"): (("text", 0),),
    ("StackWidget", "page-switch"): (("index", 1),),
    ("ToolBarAction", "activated"): (("state", 0),),
    ("TopLevel", "window-state"): (("window_state", 0),),
}


def _user_keys() -> dict[tuple[str, str], frozenset[str]]:
    keys: dict[tuple[str, str], set[str]] = {}
    for (cls, action), updates in CALLBACK_STATE.items():
        for key, _ in updates:
            keys.setdefault((cls, key), set()).add(action)
    keys[("TextEntry", "text")] = {"modified"}  # "activated" only reports Enter
    return {k: frozenset(v) for k, v in keys.items()}


def state_actions(cls: str) -> list[str]:
    """The callbacks of ``cls`` that report state the user changes (see ``CALLBACK_STATE``)."""
    return [action for (c, action) in CALLBACK_STATE if c == cls]


def state_getter(cls: str, method: str) -> str | None:
    """The state key ``cls.method`` reads if it is one of pgwidgets' local getters (a
    parameterless ``get_X`` of a class that has ``set_X``, ``is_visible``, ``get_size``), else None."""
    if method in ("is_visible", "get_size"):
        return "visible" if method == "is_visible" else "size"
    if not method.startswith("get_") or method in QUERIES or method_params(cls, method) != []:
        return None
    return method[4:] if method_params(cls, "set_" + method[4:]) is not None else None


# State the user changes in the browser: (class, key) -> the actions that report it.
# A getter of such state is answered locally only while one of them is listened to.
USER_KEYS = _user_keys()


@dataclass(frozen=True)
class MethodInfo:
    kind: Kind
    key: str | None = None  # state key of a setter or getter


@functools.lru_cache(maxsize=4096)
def classify(method: str) -> MethodInfo:
    """The kind of ``method`` and, for setters and getters, its state key."""
    if method in SETTER_KEYS:
        return MethodInfo("setter", SETTER_KEYS[method])
    if method in ACTIONS:
        return MethodInfo("action")
    if method in QUERIES:
        return MethodInfo("query")
    if method == "is_visible":
        return MethodInfo("getter", "visible")
    if method.startswith("get_"):
        return MethodInfo("getter", method[4:])
    if method.startswith("set_") and method not in ("set_cell", "set_widget"):
        return MethodInfo("setter", method[4:])
    return MethodInfo("item")


def setter_value(method: str, args: list[Any]) -> Any:
    """The state a setter call records: ``show`` -> True, one argument -> it, else the list."""
    if method == "show":
        return True
    if method == "hide":
        return False
    if len(args) == 1:
        return args[0]
    return list(args) if args else None


def constructor(cls: str) -> tuple[list[str], list[str]]:
    """The names of ``cls``'s positional constructor arguments and of its options (pgwidgets-js's
    table, :func:`~.renderer.widget_defs`); empty for a class it does not know."""
    defn = widget_defs().get(cls)
    if defn is None:
        return [], []
    return list(defn.get("args", ())), list(defn.get("options", ()))


@dataclass(frozen=True)
class Construction:
    """A constructor call as sent: ``args`` (the options object last, when there is one)."""

    args: list[Any]
    named: dict[str, Any]  # positional arguments by name, given ones only
    options: dict[str, Any]
    setters: dict[str, Any]  # other keywords: ``set_<name>(value)`` calls after the create


def construction(cls: str, args: list[Any], kwargs: dict[str, Any]) -> Construction:
    """Split a constructor call as pgwidgets-python does: positional arguments past the
    named ones fill options in order, keywords naming an option go to the options object,
    any other keyword becomes a ``set_<name>`` call."""
    names, option_names = constructor(cls)
    positional = list(args[: len(names)])
    options = dict(zip(option_names, args[len(names) :], strict=False))
    setters: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in option_names:
            options[key] = value
        else:
            setters[key] = value
    if options:  # the options object follows every named argument
        positional += [None] * (len(names) - len(positional))
        positional.append(options)
    else:
        while positional and positional[-1] is None:
            positional.pop()
    named = {n: v for n, v in zip(names, args, strict=False) if v is not None}
    return Construction(positional, named, options, setters)


def initial_state(cls: str, made: Construction) -> dict[str, Any]:
    """State known from a constructor call (named arguments and options)."""
    state: dict[str, Any] = {"enabled": True, **made.named}
    state.update((k, v) for k, v in made.options.items() if v is not None)
    if cls in ("TopLevel", "Page", "Dialog"):
        state["visible"] = False  # windows appear on show()/popup()
    return state


# -- Widgets the browser makes inside a method call --------------------------
#
# pgwidgets-js's ``Menu.add_name``, ``MenuBar.add_name``, ``Menu.add_menu(name)`` and
# ``ToolBar.add_action`` construct a widget in the browser and return it. Left to the
# browser, that widget takes the browser's next free id, which roomhub's next ``create``
# may claim (the browser then moves the menu item to another id and its clicks reach the
# wrong widget), and a replay or a second browser would number it differently. So roomhub
# makes it itself, with an id of its own, by the two calls the browser method is made of
# (pgwidgets-js 0.4.2, ``Menu.js``, ``MenuBar.js``, ``ToolBar.js``).

CHILD = object()  # stands for the made widget in ``Made.attach_args``

# Methods whose answer is a widget the browser made (pgwidgets-js 0.4.2): always round trips,
# so that the caller gets it. Its id is the browser's, which a replay does not keep.
RETURN_BROWSER_WIDGETS = frozenset({("MDIWidget", "add_widget")})


@dataclass(frozen=True)
class Made:
    """How to make what a factory method makes: ``create cls(**options)``, then
    ``parent.attach(*attach_args)`` with :data:`CHILD` replaced by the new widget."""

    cls: str
    options: dict[str, Any]
    attach: str
    attach_args: list[Any]


def made_by(cls: str, method: str, args: list[Any]) -> Made | None:
    """The widget ``cls.method(*args)`` would make in the browser, or None if it makes none."""
    if cls == "Menu" and method == "add_name" and 1 <= len(args) <= 2:
        checkable = args[1] if len(args) == 2 else False
        return Made("MenuAction", {"name": args[0], "checkable": checkable}, "add_widget", [CHILD])
    if cls == "MenuBar" and method == "add_name" and len(args) == 1:
        return Made("Menu", {}, "add_menu", [CHILD, args[0]])
    if cls == "Menu" and method == "add_menu" and (len(args) == 1 or (len(args) == 2 and args[1] is None)):
        return Made("Menu", {}, "add_menu", [args[0], CHILD])
    if cls == "ToolBar" and method == "add_action" and len(args) <= 1:
        options = args[0] if args else {}
        if isinstance(options, str):
            options = {"text": options}
        if not isinstance(options, dict):
            return None
        return Made("ToolBarAction", options, "add_widget", [CHILD])
    return None


def method_args(cls: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """Keyword arguments of a method call moved to their positions, as pgwidgets-python does:
    a skipped parameter is None (the browser's default), and keywords left over go into a
    last parameter named ``options`` (a string there becomes ``{"text": ...}``).

    Raises ``TypeError`` naming keywords ``cls.method`` does not take.
    """
    merged = list(args)
    if not kwargs:
        return merged
    params = method_params(cls, method) or []
    rest = dict(kwargs)
    for i, name in enumerate(params):
        if i >= len(merged):
            merged.append(rest.pop(name, None))
    if rest and params and params[-1] == "options":
        at = len(params) - 1
        current = merged[at]
        if isinstance(current, str):
            current = {"text": current}
        merged[at] = {**(current if isinstance(current, dict) else {}), **rest}
        rest = {}
    if rest:
        raise TypeError(f"{cls}.{method}() got unexpected keyword arguments: {', '.join(sorted(rest))}")
    while len(merged) > len(args) and merged[-1] is None:
        merged.pop()  # trailing skipped parameters: the browser's defaults
    return merged
