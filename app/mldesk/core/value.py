"""``Value`` and ``FrozenValue``: small record classes without ``dataclasses``.

``mldesk run`` starts a Python process for every execution and must start fast.
``import dataclasses`` costs ~8 ms (it imports inspect, ast, dis, tokenize...) and
every ``@dataclass`` definition ~0.5-1.3 ms (it compiles generated source); the
records on the run path are these classes instead. A subclass writes its own
``__init__`` (the parameters, their order and defaults are its API), declares
``__slots__`` with its own fields and ``_fields`` with all of them, inherited ones
first, in ``__init__``'s order. The base gives what ``@dataclass`` generated: a repr,
``==`` over the fields (same class only), a hash for frozen values (none for
mutable ones), ``replace`` and ``to_dict``.

Standard library only, and no import at all: nothing here may add to start-up.
"""

from __future__ import annotations


class Value:
    """A mutable record: ``==`` compares the fields, so it is unhashable (as a
    ``@dataclass`` with ``eq=True`` is)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()  # every field, inherited ones first (= __init__'s parameters)
    _no_compare: frozenset[str] = frozenset()  # fields left out of == and the hash (inherited)
    _compare: tuple[str, ...] = ()  # set for each class: _fields less _no_compare

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._compare = tuple(f for f in cls._fields if f not in cls._no_compare)

    def _key(self) -> tuple:
        return tuple(getattr(self, f) for f in self._compare)

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return self._key() == other._key()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def replace(self, **changes):
        """A new value with ``changes`` applied (like ``dataclasses.replace``)."""
        for name in changes:
            if name not in self._fields:
                raise TypeError(f"{type(self).__name__}.replace() got an unexpected keyword argument {name!r}")
        values = {f: getattr(self, f) for f in self._fields}
        values.update(changes)
        return self.__class__(**values)

    def to_dict(self) -> dict:
        """field -> value, in field order. Shallow: lists and dicts inside are the
        value's own (``dataclasses.asdict`` copied them)."""
        return {f: getattr(self, f) for f in self._fields}

    def __reduce__(self):  # copy and pickle through __init__ (slots, and frozen ones refuse setattr)
        return self.__class__, tuple(getattr(self, f) for f in self._fields)


class FrozenValue(Value):
    """An immutable record: assigning or deleting a field raises ``AttributeError``
    (``dataclasses.FrozenInstanceError`` is one too); ``__init__`` sets the fields
    with ``self._set(name, value)`` (``object.__setattr__``). Hashable when its
    compared fields are."""

    __slots__ = ()
    _set = object.__setattr__

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field {name!r}")

    def __hash__(self):
        return hash(self._key())


__all__ = ["FrozenValue", "Value"]
