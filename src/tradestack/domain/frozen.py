"""A cheaper `__init__` for the frozen, slotted dataclasses built on every order.

A frozen dataclass's generated `__init__` sets each field with ``object.__setattr__(self, name,
value)``: a global lookup, an attribute lookup and a call with the name, per field, every time;
a twelve-field `Order` pays for it on each event. `fast_init` replaces that `__init__` with one
of the same signature (fields, defaults, default factories, keyword-only fields) that stores each
field through its slot's own descriptor, bound once when the class is built, then calls
`__post_init__` as the dataclass would. Nothing else changes: the instance is as frozen as before
(assignment still raises `FrozenInstanceError`), and equality, hashing, `repr`, `replace` and
pickling are the dataclass's own.

`builder` makes, for such a class, a function taking every field positionally in declaration
order (no defaults, no keywords): binding a dozen keywords costs a hot path more than the stores
do. It calls `__post_init__` too, unless asked not to: `checked=False` is for a caller that has
itself established, once for many instances, what `__post_init__` would check for each.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_NO_VALUE: Any = object()


def fast_init(cls: type[T]) -> type[T]:
    """Give `cls` (a frozen dataclass with slots) the `__init__` described in the module docstring."""
    names: dict[str, Any] = {"_NO_VALUE": _NO_VALUE}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for field in _frozen_slots_fields(cls, "fast_init"):
        if not field.init:
            raise TypeError(f"fast_init does not handle init=False fields ({cls.__name__}.{field.name})")
        name = field.name
        names[f"_set_{name}"] = getattr(cls, name).__set__
        if field.default is not MISSING:
            names[f"_default_{name}"] = field.default
            param = f"{name}=_default_{name}"
        elif field.default_factory is not MISSING:
            names[f"_factory_{name}"] = field.default_factory
            param = f"{name}=_NO_VALUE"
            body.append(f"  if {name} is _NO_VALUE: {name} = _factory_{name}()")
        else:
            param = name
        (keyword if field.kw_only else positional).append(param)
        body.append(f"  _set_{name}(self, {name})")
    if hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({signature}) -> None:\n" + "\n".join(body or ["  pass"]) + "\n"
    namespace: dict[str, Any] = {}
    exec(source, names, namespace)  # noqa: S102 - source built above from the dataclass's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    if _shape(init) != _shape(cls.__init__):  # an InitVar, or a field the loop above misread
        raise TypeError(f"fast_init cannot reproduce {cls.__name__}.__init__{inspect.signature(cls.__init__)}")
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def builder(cls: type[T], *, checked: bool = True) -> Callable[..., T]:
    """A function building `cls` (a frozen dataclass with slots) from every field, positionally, in declaration order.

    With `checked` (the default) it calls `__post_init__` as the constructor does; without, it skips it."""
    names: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    params: list[str] = []
    body = ["  self = _new(_cls)"]
    for field in _frozen_slots_fields(cls, "builder"):
        if not field.init:
            raise TypeError(f"builder does not handle init=False fields ({cls.__name__}.{field.name})")
        name = field.name
        names[f"_set_{name}"] = getattr(cls, name).__set__
        params.append(name)
        body.append(f"  _set_{name}(self, {name})")
    if checked and hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    body.append("  return self")
    source = f"def build_{cls.__name__}({', '.join(params)}):\n" + "\n".join(body) + "\n"
    namespace: dict[str, Any] = {}
    exec(source, names, namespace)  # noqa: S102 - source built above from the dataclass's own field names
    build: Callable[..., T] = namespace[f"build_{cls.__name__}"]
    build.__module__ = cls.__module__
    return build


def _frozen_slots_fields(cls: type, what: str) -> tuple[Field[Any], ...]:
    """The fields of `cls`; TypeError unless it is a frozen dataclass with slots."""
    params = getattr(cls, "__dataclass_params__", None)
    if not is_dataclass(cls) or params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{what} needs a frozen dataclass with slots, got {cls.__name__}")
    return fields(cls)


def _shape(function: Any) -> list[tuple[str, Any, bool]]:
    """Each parameter's name, kind and whether it has a default."""
    return [(p.name, p.kind, p.default is p.empty) for p in inspect.signature(function).parameters.values()]
