"""A cheaper `__init__` for the frozen, slotted dataclasses built on every order.

A frozen dataclass's generated `__init__` sets each field with ``object.__setattr__(self, name,
value)``: a global lookup, an attribute lookup and a call with the name, per field, every time;
a twelve-field `Order` pays for it on each event. Storing each field through its slot's
descriptor (``descriptor.__set__(self, value)``) still costs a call per field. The cheap store is
a plain ``self.name = value``, which the interpreter turns into a direct write into the slot, but
only on a class that keeps `object`'s `__setattr__`, which a frozen class overrides to refuse.

So each class gets a *twin*: a subclass adding no slots (the same memory layout) that keeps
`object`'s `__setattr__` and `__delattr__`. An instance is made as the twin, its fields stored
with plain assignments, then its `__class__` set to the class itself (allowed between classes of
the same layout; a pointer write after a layout check). Nobody else sees the twin: the instance is
the class's own before anything reads it, as frozen as before (assignment still raises
`FrozenInstanceError`), and equality, hashing, `repr`, `replace` and pickling are the dataclass's.

`fast_init` replaces the class's `__init__` with one of the same signature (fields, defaults,
default factories, keyword-only fields) storing the fields that way (the instance the constructor
made turns twin for the stores, then back), then calls `__post_init__` as the dataclass would. An
instance of a subclass that inherits that `__init__` is stored field by field through the slot
descriptors instead.

`builder` makes, for such a class, a function taking every field positionally in declaration
order (no defaults, no keywords): binding a dozen keywords costs a hot path more than the stores
do. It makes the instance as the twin (no class switch on the way in). It calls `__post_init__`
too, unless asked not to: `checked=False` is for a caller that has itself established, once for
many instances, what `__post_init__` would check for each.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_NO_VALUE: Any = object()
_TWINS: dict[type, type] = {}
TWIN_INIT_FIELDS = 5
"""Fewest fields for which `fast_init`'s `__init__` stores through the twin (measured: two class switches cost
about what four descriptor stores do)."""


def fast_init(cls: type[T]) -> type[T]:
    """Give `cls` (a frozen dataclass with slots) the `__init__` described in the module docstring."""
    names: dict[str, Any] = {
        "_NO_VALUE": _NO_VALUE,
        "_cls": cls,
        "_twin": _twin(cls),
        "_set_class": object.__setattr__,
        "_type": type,
    }
    positional: list[str] = []
    keyword: list[str] = []
    defaults: list[str] = []
    stores: list[str] = []
    slow_stores: list[str] = []
    for field in _frozen_slots_fields(cls, "fast_init"):
        if not field.init:
            raise TypeError(f"fast_init does not handle init=False fields ({cls.__name__}.{field.name})")
        if field.name in names:
            raise TypeError(f"fast_init needs the name {field.name} for itself ({cls.__name__}.{field.name})")
        name = field.name
        names[f"_set_{name}"] = getattr(cls, name).__set__
        if field.default is not MISSING:
            names[f"_default_{name}"] = field.default
            param = f"{name}=_default_{name}"
        elif field.default_factory is not MISSING:
            names[f"_factory_{name}"] = field.default_factory
            param = f"{name}=_NO_VALUE"
            defaults.append(f"  if {name} is _NO_VALUE: {name} = _factory_{name}()")
        else:
            param = name
        (keyword if field.kw_only else positional).append(param)
        stores.append(f"    self.{name} = {name}")
        slow_stores.append(f"    _set_{name}(self, {name})")
    if len(stores) >= TWIN_INIT_FIELDS:
        body = [
            *defaults,
            "  if _type(self) is _cls:",
            '    _set_class(self, "__class__", _twin)',
            *stores,
            "    self.__class__ = _cls",
            "  else:  # a subclass's instance: its layout may differ from the twin's",
            *slow_stores,
        ]
    else:  # two class switches cost more than the stores they make cheaper
        body = [*defaults, *(store[2:] for store in slow_stores)] or ["  pass"]
    if hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({signature}) -> None:\n" + "\n".join(body) + "\n"
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
    names: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_twin": _twin(cls)}
    params: list[str] = []
    body = ["  self = _new(_twin)"]
    for field in _frozen_slots_fields(cls, "builder"):
        if not field.init:
            raise TypeError(f"builder does not handle init=False fields ({cls.__name__}.{field.name})")
        if field.name in names:
            raise TypeError(f"builder needs the name {field.name} for itself ({cls.__name__}.{field.name})")
        params.append(field.name)
        body.append(f"  self.{field.name} = {field.name}")
    body.append("  self.__class__ = _cls")
    if checked and hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    body.append("  return self")
    source = f"def build_{cls.__name__}({', '.join(params)}):\n" + "\n".join(body) + "\n"
    namespace: dict[str, Any] = {}
    exec(source, names, namespace)  # noqa: S102 - source built above from the dataclass's own field names
    build: Callable[..., T] = namespace[f"build_{cls.__name__}"]
    build.__module__ = cls.__module__
    return build


def _twin(cls: type) -> type:
    """`cls`'s twin (see the module docstring): its layout, `object`'s attribute setting; made once per class."""
    twin = _TWINS.get(cls)
    if twin is None:
        namespace = {"__slots__": (), "__setattr__": object.__setattr__, "__delattr__": object.__delattr__}
        twin = _TWINS[cls] = type(f"{cls.__name__}Building", (cls,), namespace)
        twin.__module__ = cls.__module__
        twin.__qualname__ = f"{cls.__qualname__}Building"
    return twin


def _frozen_slots_fields(cls: type, what: str) -> tuple[Field[Any], ...]:
    """The fields of `cls`; TypeError unless it is a frozen dataclass with slots."""
    params = getattr(cls, "__dataclass_params__", None)
    if not is_dataclass(cls) or params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{what} needs a frozen dataclass with slots, got {cls.__name__}")
    return fields(cls)


def _shape(function: Any) -> list[tuple[str, Any, bool]]:
    """Each parameter's name, kind and whether it has a default."""
    return [(p.name, p.kind, p.default is p.empty) for p in inspect.signature(function).parameters.values()]
