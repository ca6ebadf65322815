"""SQLAlchemy tables, one file per aggregate. Import them all here so Alembic sees every table."""

from tradestack.models.base import Base
from tradestack.models.instance import Instance

__all__ = ["Base", "Instance"]
