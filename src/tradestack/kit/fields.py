"""Request bodies and field types whose every accepted value can be stored.

Numbers check the column's own `Precision`: a value that passes fits the column it is written to,
so a request can never get past validation and then fail while its order (denied or not) is being
stored. Text refuses the NUL character, which PostgreSQL cannot store or compare.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

from tradestack.core.money import DECIMAL_TEXT, ascii_decimal_text, average_text, plain
from tradestack.core.precision import AMOUNT, PRICE, Precision


def fitting(limits: Precision) -> AfterValidator:
    """A validator refusing a Decimal that does not fit `limits`, saying what the limits are."""

    def check(value: Decimal) -> Decimal:
        problem = limits.problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


WireDecimal = Annotated[
    Decimal, BeforeValidator(ascii_decimal_text), Field(json_schema_extra={"pattern": DECIMAL_TEXT}, allow_inf_nan=False)
]
"""A decimal from a client: a JSON number or ASCII decimal text (the schema publishes the pattern)."""

PositivePrice = Annotated[WireDecimal, Field(gt=0), fitting(PRICE)]
"""A price above zero that fits a price column (14 integer digits, 10 decimal places)."""

PositiveAmount = Annotated[WireDecimal, Field(gt=0), fitting(AMOUNT)]
"""A quantity or amount above zero that fits an amount column (20 integer digits, 18 decimal places)."""


DecimalText = Annotated[Decimal, PlainSerializer(plain, return_type=str, when_used="json")]
"""A Decimal sent as its plain canonical text (``"1902.5"``, never ``"1.9025E+3"``)."""

AverageText = Annotated[Decimal, PlainSerializer(average_text, return_type=str, when_used="json")]
"""An average price sent rounded half-even to `AVERAGE_PLACES` (8) decimal places, as plain text."""


class RequestBody(BaseModel):
    """Base of every JSON request body: unknown fields are refused, and so is NUL in any text."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        texts = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("text must not contain the NUL character (\\u0000)")
        return value
