"""SQLAlchemy tables, one file per aggregate. Import them all here so Alembic sees every table."""

from tradestack.models.audit import AuditEntry
from tradestack.models.base import Base
from tradestack.models.identity import ApiKey, RecoveryCode, RefreshToken, TradingAccount, User
from tradestack.models.instance import Instance

__all__ = ["ApiKey", "AuditEntry", "Base", "Instance", "RecoveryCode", "RefreshToken", "TradingAccount", "User"]
