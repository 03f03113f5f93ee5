# SPDX-License-Identifier: Apache-2.0
"""Field checks shared by the typed configs of the package (``__post_init__`` of each config dataclass).

Each check returns the value (converted where it says so) or raises a one-line :class:`ValueError` that names the
field, the accepted range and the value it got, e.g. ``num_iters must be an integer >= 1, got 0``.
"""

import math

__all__ = ["choice", "fraction", "group", "integer", "new_entry", "number", "positive", "remove_entry", "unit"]


def integer(name, value, low, none=False):
    """``value`` as an ``int >= low`` (``None`` passes with ``none``); ``True`` / ``False`` are refused."""
    if value is None and none:
        return None
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= low
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= {low}{' or None' if none else ''}, got {value!r}")
    return int(value)


def number(name, value, rule, test, none=False):
    """``value`` as a float passing ``test`` (``rule`` says it in words; ``None`` passes with ``none``)."""
    if value is None and none:
        return None
    try:
        ok = not isinstance(value, bool) and test(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be {rule}{' or None' if none else ''}, got {value!r}")
    return float(value)


def positive(name, value, none=False, zero=False):
    """``value`` as a finite float ``> 0`` (``>= 0`` with ``zero``)."""
    if zero:
        return number(name, value, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0, none)
    return number(name, value, "a finite number > 0", lambda v: math.isfinite(v) and v > 0, none)


def fraction(name, value, none=False):
    """``value`` as a float in the open interval ``(0, 1)``."""
    return number(name, value, "in (0, 1)", lambda v: 0.0 < v < 1.0, none)


def unit(name, value, none=False):
    """``value`` as a float in the closed interval ``[0, 1]``."""
    return number(name, value, "in [0, 1]", lambda v: 0.0 <= v <= 1.0, none)


def choice(name, value, choices):
    """``value`` if it is one of ``choices``."""
    if isinstance(value, (list, dict, set)) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def group(cls, value):
    """An option group of a config: ``value`` itself when it is a ``cls``, or ``cls(**value)`` for a dict of
    fields over the group's defaults."""
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**value)
    raise TypeError(f"expected a {cls.__name__} or a dict of its fields, got {type(value).__name__}")


def new_entry(kind, registry, name, cls, base):
    """Check that the class ``cls`` may be added to ``registry`` (a dict: name -> class, or -> ``(class, ...)``) as
    ``name``: a ``base`` subclass under a new, non-empty name. ``kind`` names the entries in the messages
    (``"prior"``, ``"noise model"``).

    :raises TypeError: if ``cls`` is not a ``base`` subclass.
    :raises ValueError: if the name is empty or taken.
    """
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"register takes a {base.__name__} subclass, got {cls!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {kind}'s registry name is a non-empty string, got {name!r}")
    if name in registry:
        held = registry[name][0] if isinstance(registry[name], tuple) else registry[name]
        raise ValueError(f"a {kind} is already registered as {name!r} ({held.__name__})")


def remove_entry(kind, registry, name, built_in):
    """Remove ``name`` from ``registry``, refusing the ``built_in`` names and names it does not hold."""
    if name in built_in:
        raise ValueError(f"{name!r} is a built-in {kind}")
    if name not in registry:
        raise ValueError(f"no {kind} registered as {name!r}")
    del registry[name]
