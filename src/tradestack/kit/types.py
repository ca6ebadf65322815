"""Column types that keep money exact on every database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from tradestack.core.money import D, canonical, plain
from tradestack.core.precision import Precision


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal column that never loses a digit.

    PostgreSQL stores ``NUMERIC(precision, scale)``. SQLite has no exact decimal type, so the
    value is stored as its canonical text. Floats are refused, and a value with more digits
    after the point than ``scale`` (or more integer digits than ``precision - scale``) raises
    instead of being rounded. Values read back are canonical (no trailing zeros).
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int = 38, scale: int = 18) -> None:
        super().__init__()
        self.limits = Precision(precision, scale)
        self.precision = precision
        self.scale = scale

    @classmethod
    def of(cls, precision: Precision) -> ExactDecimal:
        """A column holding numbers of this precision (the request schemas check the same one)."""
        return cls(precision.precision, precision.scale)

    def __repr__(self) -> str:
        """As Alembic's autogenerate should render it, precision and scale included."""
        return f"ExactDecimal({self.precision}, {self.scale})"

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(self.precision + 3))
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = canonical(D(value))
        problem = self.limits.problem(number)
        if problem is not None:
            raise ValueError(problem)
        if dialect.name == "sqlite":
            return plain(number)
        return number

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return canonical(Decimal(value) if isinstance(value, str) else D(value))

    def compare_against_backend(self, dialect: Dialect, conn_type: TypeEngine[Any]) -> bool | None:
        if dialect.name == "sqlite":
            return isinstance(conn_type, String | Numeric)
        return isinstance(conn_type, Numeric) and conn_type.precision == self.precision and conn_type.scale == self.scale
