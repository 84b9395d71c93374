"""Argument checks shared by every public function.

One rule and one message form everywhere:

* a value of the wrong *type* (a float where an integer is expected, a string where a number is,
  ``1`` where ``True`` is) raises :class:`ArgumentTypeError`;
* a value of the right type that is out of range raises :class:`ValueError`;
* the message reads ``"name: expected ..., got ..."``, naming the argument as the caller wrote it.

:class:`ArgumentTypeError` is a :class:`TypeError` and also a :class:`ValueError`: earlier
releases raised ValueError for some wrong types, and code that catches ValueError keeps working.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type. A TypeError; also a ValueError, for code written against
    releases that raised ValueError for these."""


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def boolean(name: str, value: Any) -> bool:
    """``value`` if it is True or False (no truthy stand-ins: 1, "yes" and None are rejected).

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check.

    Returns:
        ``value`` as a Python bool (NumPy bools are accepted).

    Raises:
        ArgumentTypeError: if ``value`` is not a Python or NumPy bool.
    """
    if not _is_bool(value):
        raise ArgumentTypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def integer(
    name: str, value: Any, minimum: int | None = None, maximum: int | None = None, expected: str | None = None
) -> int:
    """``value`` as an int in [minimum, maximum] (either bound optional; ``expected`` overrides
    the description in errors). Python and NumPy integers are accepted; bools and floats (even
    2.0) are not.

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check.
        minimum: the smallest allowed value; None for no lower bound.
        maximum: the largest allowed value; None for no upper bound.
        expected: the description of a valid value in error messages; None builds one from the
            bounds (e.g. "an integer >= 1").

    Returns:
        ``value`` as a Python int.

    Raises:
        ArgumentTypeError: if ``value`` is not an integer (a bool, a float, a string, ...).
        ValueError: if ``value`` lies outside [minimum, maximum].
    """
    if expected is None:
        bounds = [f">= {minimum}"] * (minimum is not None) + [f"<= {maximum}"] * (maximum is not None)
        expected = "an integer" + (
            f" in [{minimum}, {maximum}]" if len(bounds) == 2 else "".join(f" {b}" for b in bounds)
        )
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name}: expected {expected}, got {value!r:.60}")
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise ValueError(f"{name}: expected {expected}, got {out}")
    return out


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (default 1).

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check.
        minimum: the smallest allowed value.

    Returns:
        ``value`` as a Python int.

    Raises:
        ArgumentTypeError: if ``value`` is not an integer.
        ValueError: if ``value`` < ``minimum``.
    """
    return integer(name, value, minimum=minimum)


def optional_positive_int(name: str, value: Any) -> int | None:
    """None, or an int >= 1.

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check; None is passed through.

    Returns:
        None if ``value`` is None, else ``value`` as a Python int >= 1.

    Raises:
        ArgumentTypeError: if ``value`` is neither None nor an integer.
        ValueError: if ``value`` < 1.
    """
    return None if value is None else positive_int(name, value)


def real(
    name: str,
    value: Any,
    expected: str,
    ok: Callable[[float], bool] = lambda v: True,
    type_expected: str | None = None,
) -> float:
    """``value`` as a finite float passing ``ok``; ``expected`` describes the valid range (e.g.
    "a finite number > 0"), ``type_expected`` what a wrong type is told (default ``expected``).
    Python/NumPy numbers and 0-d arrays are accepted; bools, strings and None are not.

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check.
        expected: the description of a valid value in error messages.
        ok: a predicate on the converted float; a value it rejects raises ValueError. The
            default accepts every finite value.
        type_expected: the description given for a value of the wrong type; None uses
            ``expected``.

    Returns:
        ``value`` as a Python float.

    Raises:
        ArgumentTypeError: if ``value`` is a bool, a string, bytes, None or not convertible to float.
        ValueError: if ``value`` is not finite or ``ok`` rejects it.
    """
    if _is_bool(value) or isinstance(value, (str, bytes)) or value is None:
        raise ArgumentTypeError(f"{name}: expected {type_expected or expected}, got {value!r:.60}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name}: expected {type_expected or expected}, got {value!r:.60}") from None
    if not (math.isfinite(out) and ok(out)):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return out


def positive_float(name: str, value: Any) -> float:
    """A finite float > 0.

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check.

    Returns:
        ``value`` as a Python float.

    Raises:
        ArgumentTypeError: if ``value`` is not a number.
        ValueError: if ``value`` is not finite or not > 0.
    """
    return real(name, value, "a finite number > 0", lambda v: v > 0, type_expected="a number > 0")


def optional_positive_float(name: str, value: Any) -> float | None:
    """None, or a finite float > 0.

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check; None is passed through.

    Returns:
        None if ``value`` is None, else ``value`` as a Python float.

    Raises:
        ArgumentTypeError: if ``value`` is neither None nor a number.
        ValueError: if ``value`` is not finite or not > 0.
    """
    return None if value is None else positive_float(name, value)


def non_negative_float(name: str, value: Any) -> float:
    """A finite float >= 0.

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check.

    Returns:
        ``value`` as a Python float.

    Raises:
        ArgumentTypeError: if ``value`` is not a number.
        ValueError: if ``value`` is not finite or is < 0.
    """
    return real(name, value, "a finite number >= 0", lambda v: v >= 0)


def probability(name: str, value: Any) -> float:
    """A float strictly between 0 and 1.

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check.

    Returns:
        ``value`` as a Python float in (0, 1).

    Raises:
        ArgumentTypeError: if ``value`` is not a number.
        ValueError: if ``value`` is not in (0, 1).
    """
    return real(name, value, "a number in (0, 1)", lambda v: 0 < v < 1)


def fraction(name: str, value: Any) -> float:
    """A float in [0, 1).

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check.

    Returns:
        ``value`` as a Python float in [0, 1).

    Raises:
        ArgumentTypeError: if ``value`` is not a number.
        ValueError: if ``value`` is not in [0, 1).
    """
    return real(name, value, "a number in [0, 1)", lambda v: 0 <= v < 1)


def integer_list(name: str, values: Any, minimum: int | None = None, min_len: int = 0) -> list[int]:
    """A sequence of ints, each >= ``minimum``, at least ``min_len`` long; entries are named
    ``name[i]`` in errors.

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        values: a sequence (or other iterable) of integers.
        minimum: the smallest allowed entry; None for no lower bound.
        min_len: the fewest entries allowed.

    Returns:
        The entries as a list of Python ints.

    Raises:
        ArgumentTypeError: if ``values`` is not iterable or an entry is not an integer.
        ValueError: if an entry is < ``minimum`` or there are fewer than ``min_len`` entries.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        try:
            values = list(values)
        except TypeError:
            raise ArgumentTypeError(f"{name}: expected a sequence of integers, got {values!r}") from None
    out = [integer(f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(values)]
    if len(out) < min_len:
        raise ValueError(f"{name}: expected at least {min_len} entries, got {len(out)}")
    return out


def one_of(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``.

    Args:
        name: the argument's name as the caller wrote it, used in error messages.
        value: the value to check.
        choices: the allowed values (compared with ``in``, i.e. by equality).

    Returns:
        ``value``, unchanged.

    Raises:
        ValueError: if ``value`` is not in ``choices``.
    """
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value
