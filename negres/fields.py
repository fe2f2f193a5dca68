"""Config fields declared next to the code that reads them: name, default, meaning, range.

A task, model, optimizer or evaluator lists its fields as :class:`Field` values; the
study's config validation, ``configs/default.py`` and the docs' config reference are all
built from these declarations (:mod:`negres.study.config`), so a default is written once.
Every check refuses NaN and infinity where a finite number is meant, and booleans where a
number is meant.

These are negres's one set of value checks: the config's fields and the library's argument
checks (:mod:`negres.training.checks`, which raise
:class:`~negres.errors.ArgumentError`) both use :func:`is_int`, :func:`is_number`,
:class:`Interval`, :func:`one_of` and :func:`real_numbers`, so a bound and its wording are
written once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from ml_collections import ConfigDict

from negres.errors import ArgumentError, ConfigError


@dataclass(frozen=True)
class Field:
    """One config field.

    Attributes:
      name: the field's name within its section.
      default: its value when a config does not set it.
      doc: what it means, in one line (shown in ``configs/default.py`` and the docs).
      allowed: what values are allowed, in words (shown in errors and the docs).
      accepts: whether a value is allowed.
    """

    name: str
    default: Any
    doc: str
    allowed: str
    accepts: Callable[[Any], bool]

    def check(self, value: Any, section: str) -> None:
        """Raise :class:`ConfigError` naming ``section.name`` if ``value`` is not allowed."""
        if not self.accepts(value):
            raise ConfigError(f"{section}.{self.name}" if section else self.name, value,
                              self.allowed)

    def check_argument(self, value: Any, argument: str | None = None) -> None:
        """Raise :class:`ArgumentError` naming ``argument`` (default: the field's name) if
        ``value`` is not allowed: the library's check of the argument a field configures."""
        if not self.accepts(value):
            raise ArgumentError(self.name if argument is None else argument, value,
                                self.allowed)


def is_int(value: Any) -> bool:
    """A Python integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def is_int_in(value: Any, minimum: int, maximum: float = math.inf) -> bool:
    """An integer (not a bool) in ``[minimum, maximum]``."""
    return is_int(value) and minimum <= value <= maximum


def one_of(options: Iterable[Any]) -> str:
    """``one of [...]``: the options in words, sorted."""
    return f"one of {sorted(options, key=str)}"


class Interval(NamedTuple):
    """The real numbers from ``low`` to ``high``, each end closed unless said open."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def holds(self, values: Any) -> Any:
        """Whether each of ``values`` (a number or a numpy array) lies in the interval."""
        above = values > self.low if self.low_open else values >= self.low
        below = values < self.high if self.high_open else values <= self.high
        return above & below

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is a finite real number (not a bool) in the interval."""
        return is_number(value) and bool(self.holds(value))

    @property
    def bounds(self) -> str:
        """``> 0``, ``<= 1``, ``in [0, 1)``, or ``''`` when unbounded."""
        if math.isinf(self.low) and math.isinf(self.high):
            return ""
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if math.isinf(self.low):
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.high_open else ']'}")

    @property
    def allowed(self) -> str:
        """What :meth:`accepts` allows, in words: ``a finite number >= 0``,
        ``a number in [0, 1)``."""
        if math.isinf(self.low) or math.isinf(self.high):
            return f"a finite number {self.bounds}".rstrip()
        return f"a number {self.bounds}"


def real_numbers(argument: str, values: Any, allowed: str) -> np.ndarray:
    """``values`` (a number or a list of them) as a float64 array, each a finite real
    number; anything else (strings, booleans, None, complex numbers, NaN, infinity) is an
    :class:`ArgumentError` naming ``argument``."""
    items = values if isinstance(values, (list, tuple)) else [values]
    if any(isinstance(v, (bool, np.bool_, str, bytes)) or v is None for v in items):
        raise ArgumentError(argument, values, allowed)
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):  # ragged or not array-like
        raise ArgumentError(argument, values, allowed) from None
    if array.dtype.kind not in "iuf":
        raise ArgumentError(argument, values, allowed)
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ArgumentError(argument, values, allowed)
    return array


def integer(name: str, default: int, doc: str, minimum: int = 0,
            maximum: int | None = None) -> Field:
    """An integer in ``[minimum, maximum]``."""
    allowed = (f"an integer from {minimum} to {maximum}" if maximum is not None
               else f"an integer >= {minimum}")
    upper = math.inf if maximum is None else maximum
    return Field(name, default, doc, allowed, lambda v: is_int_in(v, minimum, upper))


def number(name: str, default: float, doc: str, low: float = -math.inf,
           high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Field:
    """A finite number in the interval from ``low`` to ``high`` (open where said)."""
    return bounded(name, default, doc, Interval(low, high, low_open, high_open))


def bounded(name: str, default: float, doc: str, interval: Interval) -> Field:
    """A finite number in ``interval``."""
    return Field(name, default, doc, interval.allowed, interval.accepts)


def boolean(name: str, default: bool, doc: str) -> Field:
    return Field(name, default, doc, "True or False", lambda v: isinstance(v, bool))


def choice(name: str, default: Any, doc: str, options: Iterable[Any]) -> Field:
    """One of ``options`` (of the default's type)."""
    options = tuple(options)
    return Field(name, default, doc, one_of(options),
                 lambda v: isinstance(v, type(default)) and v in options)


def text(name: str, default: str, doc: str) -> Field:
    return Field(name, default, doc, "a string", lambda v: isinstance(v, str))


def sequence(name: str, default: tuple, doc: str, item: Callable[[Any], bool],
             item_text: str, *, min_len: int = 0, unique: bool = False,
             max_len: int | None = None) -> Field:
    """A tuple or list of items each accepted by ``item``."""
    allowed = (f"a tuple of {item_text}" + (f", at least {min_len}" if min_len else "")
               + (f", at most {max_len}" if max_len is not None else "")
               + (", without repeats" if unique else ""))

    def accepts(v: Any) -> bool:
        if not isinstance(v, (tuple, list)) or len(v) < min_len:
            return False
        if max_len is not None and len(v) > max_len:
            return False
        if unique and len(set(map(repr, v))) != len(v):
            return False
        return all(item(x) for x in v)

    return Field(name, default, doc, allowed, accepts)


def names(name: str, default: tuple, doc: str, known: Iterable[str] | None = None, *,
          min_len: int = 0) -> Field:
    """A tuple of distinct names, from ``known`` where given (else checked elsewhere)."""
    options = None if known is None else frozenset(known)
    item_text = "names" if options is None else f"names in {sorted(options)}"
    return sequence(name, default, doc,
                    lambda x: isinstance(x, str) and (options is None or x in options),
                    item_text, min_len=min_len, unique=True)


def check_section(node: Mapping[str, Any] | ConfigDict, fields: Iterable[Field],
                  section: str) -> None:
    """Check every declared field that ``node`` holds."""
    for field in fields:
        if field.name in node:
            field.check(node[field.name], section)


def fill_defaults(node: ConfigDict, fields: Iterable[Field]) -> None:
    """Set every declared field ``node`` lacks to its default, in place."""
    with node.unlocked():
        for field in fields:
            if field.name not in node:
                node[field.name] = field.default


def completed(node: Mapping[str, Any] | ConfigDict, fields: Iterable[Field],
              section: str) -> ConfigDict:
    """A copy of ``node`` with every declared field, after refusing a name none of
    ``fields`` declares and a value its field does not allow (:class:`ConfigError` naming
    ``section.name``)."""
    fields = tuple(fields)
    known = {f.name for f in fields}
    for key in node:
        if key not in known:
            raise ConfigError(f"{section}.{key}", node[key],
                              f"a field of {section}, one of {sorted(known)}")
    check_section(node, fields, section)
    copy = ConfigDict(node.to_dict() if isinstance(node, ConfigDict) else dict(node))
    fill_defaults(copy, fields)
    return copy
