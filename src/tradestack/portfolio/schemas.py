"""Shapes of accounts on the wire."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field


class Deposit(BaseModel):
    """Cash put into a new paper account."""

    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code, e.g. AUD.")
    amount: Decimal = Field(gt=0, le=Decimal("1e12"), max_digits=22, decimal_places=8, description="Decimal string.")


class AccountCreate(BaseModel):
    """A new paper account and its initial deposit."""

    name: str = Field(min_length=1, max_length=100)
    base_currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="Currency the account is valued in.")
    deposit: Deposit


class AccountWithCash(BaseModel):
    """A trading account and its cash per currency."""

    id: str
    name: str
    base_currency: str
    kind: str
    allow_short: bool
    created_at: datetime
    cash: dict[str, Decimal] = Field(description="Cash balance per currency (decimal strings).")
