"""SQLAlchemy tables, one file per aggregate. Import them all here so Alembic sees every table."""

from tradestack.models.audit import AuditChainerLease, AuditEntry, AuditOutbox, AuditPersonal
from tradestack.models.backtests import BacktestRunRow
from tradestack.models.base import Base
from tradestack.models.books import BalanceRow, FillRow, JournalEntryRow, PostingRow, TradingAccount
from tradestack.models.identity import ApiKey, RecoveryCode, RefreshToken, User
from tradestack.models.instance import Instance
from tradestack.models.marketdata import BarRow, BarVersionRow, InstrumentRow
from tradestack.models.signals import SignalModelRow, SignalOutcomeRow
from tradestack.models.strategies import StrategyDeploymentRow
from tradestack.models.trading import OrderEventRow, OrderRow, RiskLimitsRow, TradingStateRow

__all__ = [
    "ApiKey",
    "AuditChainerLease",
    "AuditEntry",
    "AuditOutbox",
    "AuditPersonal",
    "BacktestRunRow",
    "BalanceRow",
    "BarRow",
    "BarVersionRow",
    "Base",
    "FillRow",
    "Instance",
    "InstrumentRow",
    "JournalEntryRow",
    "OrderEventRow",
    "OrderRow",
    "PostingRow",
    "RecoveryCode",
    "RefreshToken",
    "RiskLimitsRow",
    "SignalModelRow",
    "SignalOutcomeRow",
    "StrategyDeploymentRow",
    "TradingAccount",
    "TradingStateRow",
    "User",
]
