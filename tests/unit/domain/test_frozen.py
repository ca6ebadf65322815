"""`fast_init`: the same constructor as the dataclass's, cheaper, on a class still frozen."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError, InitVar, dataclass, field, replace

import pytest

from tradestack.domain.frozen import builder, fast_init
from tradestack.domain.orders import Order, OrderAccepted, OrderFilled


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class _Base:
    a: int
    b: list[int] = field(default_factory=list)
    c: str = "x"

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("a must not be negative")


@fast_init
@dataclass(frozen=True, slots=True)
class _Child(_Base):
    d: int = 4


def test_same_fields_defaults_and_factories() -> None:
    one, two = _Base(a=1), _Base(a=1)
    assert one == two
    assert one.b == []
    assert one.b is not two.b
    assert one.c == "x"
    assert _Child(a=2, d=5) == _Child(a=2, d=5) != _Child(a=2)
    assert replace(one, c="y") == _Base(a=1, c="y")
    assert pickle.loads(pickle.dumps(_Child(a=3)))  # noqa: S301 - our own bytes == _Child(a=3)


def test_post_init_still_checks() -> None:
    with pytest.raises(ValueError, match="negative"):
        _Base(a=-1)


def test_still_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        _Base(a=1).a = 2  # type: ignore[misc]


def test_signature_errors_like_the_dataclass() -> None:
    with pytest.raises(TypeError):
        _Base(1)  # type: ignore[call-arg]  # keyword-only
    with pytest.raises(TypeError):
        _Base(a=1, e=2)  # type: ignore[call-arg]


def test_refuses_what_it_cannot_reproduce() -> None:
    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        x: InitVar[int] = 0

        def __post_init__(self, x: int) -> None:
            pass

    with pytest.raises(TypeError, match="cannot reproduce"):
        fast_init(WithInitVar)

    @dataclass(slots=True)
    class Mutable:
        a: int

    with pytest.raises(TypeError, match="frozen dataclass with slots"):
        fast_init(Mutable)


def test_domain_classes_use_it() -> None:
    for cls in (Order, OrderAccepted, OrderFilled):
        assert "_NO_VALUE" in cls.__init__.__globals__  # fast_init's namespace, not the dataclass's


def test_builder_takes_every_field_in_order_and_checks() -> None:
    build = builder(_Child)
    assert build(1, [2], "y", 5) == _Child(a=1, b=[2], c="y", d=5)
    with pytest.raises(ValueError, match="negative"):
        build(-1, [], "x", 4)
    with pytest.raises(TypeError):
        build(1, [], "x")  # no defaults: every field, positionally
    with pytest.raises(FrozenInstanceError):
        build(1, [], "x", 4).a = 2


def test_unchecked_builder_skips_post_init_only() -> None:
    built = builder(_Base, checked=False)(-1, [], "x")  # what __post_init__ refuses: the caller vouches for its values
    assert (built.a, built.b, built.c) == (-1, [], "x")
    assert type(built) is _Base


def test_builder_refuses_what_it_cannot_reproduce() -> None:
    @dataclass(slots=True)
    class Mutable:
        a: int

    with pytest.raises(TypeError, match="frozen dataclass with slots"):
        builder(Mutable)

    @dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = field(init=False, default=0)

    with pytest.raises(TypeError, match="init=False"):
        builder(Derived)


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class _Wide:  # enough fields for fast_init to store through the twin; `type` shadows the builtin in the generated code
    type: str
    a: int
    b: int = 2
    c: list[int] = field(default_factory=list)
    d: str = "d"
    e: int = 5

    def __post_init__(self) -> None:
        if type(self) is not _Wide and not isinstance(self, _Wide):  # pragma: no cover - what the test below pins
            raise AssertionError("__post_init__ sees the twin")


def test_an_instance_is_the_class_itself_never_its_twin() -> None:
    for built in (
        _Wide(type="t", a=1),
        builder(_Wide)("t", 1, 2, [], "d", 5),
        builder(_Wide, checked=False)("t", 1, 2, [], "d", 5),
    ):
        assert type(built) is _Wide
        assert built == _Wide(type="t", a=1, b=2, c=[], d="d", e=5)
        with pytest.raises(FrozenInstanceError):
            built.a = 2  # type: ignore[misc]
        with pytest.raises(FrozenInstanceError):
            del built.a
        assert pickle.loads(pickle.dumps(built)) == built  # noqa: S301 - our own bytes
        assert replace(built, a=7).a == 7
    assert type(builder(_Base)(1, [], "x")) is _Base  # a narrow class through the builder too


def test_post_init_runs_on_the_class_itself() -> None:
    seen: list[type] = []

    @fast_init
    @dataclass(frozen=True, slots=True)
    class Seen:
        a: int
        b: int
        c: int
        d: int
        e: int

        def __post_init__(self) -> None:
            seen.append(type(self))

    Seen(1, 2, 3, 4, 5)
    builder(Seen)(1, 2, 3, 4, 5)
    assert seen == [Seen, Seen]


def test_a_subclass_inheriting_the_init_keeps_its_class() -> None:
    class Plain(_Wide):  # not a dataclass: inherits _Wide's __init__, and gets a __dict__ the twin has not
        pass

    built = Plain(type="t", a=1)
    assert type(built) is Plain
    assert (built.type, built.a, built.b, built.c, built.e) == ("t", 1, 2, [], 5)


def test_refuses_a_field_named_like_its_own_globals() -> None:
    @dataclass(frozen=True, slots=True)
    class Clash:
        _cls: int

    with pytest.raises(TypeError, match="needs the name _cls"):
        builder(Clash)
    with pytest.raises(TypeError, match="needs the name _cls"):
        fast_init(Clash)
