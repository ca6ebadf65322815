"""SQL of the ops module."""

from __future__ import annotations

from sqlalchemy import select

from tradestack.kit.repository import Repository
from tradestack.models.instance import Instance


class InstanceRepository(Repository):
    """The installation's identity row."""

    async def get(self) -> Instance | None:
        result = await self.session.execute(select(Instance).order_by(Instance.created_at).limit(1))
        return result.scalar_one_or_none()

    async def add(self, instance: Instance) -> Instance:
        self.session.add(instance)
        await self.session.flush()
        return instance
