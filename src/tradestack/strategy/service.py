"""Stored backtest runs (`BacktestService`) and strategies deployed on paper (`StrategyService`)."""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import tradestack
from tradestack.audit.service import AuditService, wake_chainer
from tradestack.backtest.data import BarSeries, utc_of
from tradestack.backtest.engine import BacktestResult
from tradestack.backtest.metrics import Metrics
from tradestack.backtest.report import data_fingerprint, result_document
from tradestack.books.service import BooksService
from tradestack.core.errors import ConflictError, NotFoundError, ValidationFailedError
from tradestack.core.money import plain
from tradestack.domain.marketdata import Bar
from tradestack.domain.orders import FillEvent, Order
from tradestack.domain.portfolio import PositionState
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Caller, Principal
from tradestack.kit.outages import count_outage, unavailable_backend
from tradestack.kit.runtime import Runtime
from tradestack.marketdata.service import MarketDataService
from tradestack.models.backtests import BacktestRunRow
from tradestack.models.strategies import StrategyDeploymentRow
from tradestack.strategy.api import Strategy, StrategyError
from tradestack.strategy.examples import STRATEGIES, ParameterError, build
from tradestack.strategy.repository import BacktestRepository, DeploymentRepository, StrategyBarRepository
from tradestack.strategy.schemas import (
    BacktestDetail,
    BacktestList,
    BacktestSummary,
    StrategyDeploy,
    StrategyList,
    StrategyOut,
    StrategyPnl,
    StrategyPosition,
)
from tradestack.trading.service import TradingService

MAX_PAGE = 500


def _summary(row: BacktestRunRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": row.created_at,
        "strategy": row.strategy,
        "symbols": row.symbols.split(","),
        "first_bar": row.first_bar,
        "last_bar": row.last_bar,
        "bars": row.bars,
        "code_version": row.code_version,
        "data_fingerprint": row.data_fingerprint,
        "final_equity": row.final_equity,
        "metrics": json.loads(row.metrics_json),
    }


class BacktestService:
    """The stored runs of the backtester."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def store(
        self,
        result: BacktestResult,
        metrics: Metrics,
        series: Sequence[BarSeries],
        params: dict[str, str],
        source: dict[str, str | None] | None = None,
    ) -> str:
        """Keep `result` (run over `series` with `params`, read from `source`: data set, timeframe); its new run id."""
        document = result_document(result, metrics)
        spec = {"strategy": result.strategy, "params": params, "symbols": list(result.symbols), **document.pop("config")}
        if source:
            spec["source"] = source
        metrics_part = document.pop("metrics")
        row = BacktestRunRow(
            id=str(uuid.uuid4()),
            created_at=self.runtime.clock.now(),
            strategy=result.strategy,
            symbols=",".join(result.symbols),
            first_bar=utc_of(min(int(s.ts[0]) for s in series)),
            last_bar=utc_of(max(int(s.ts[-1]) for s in series)),
            bars=result.bars,
            code_version=tradestack.__version__,
            data_fingerprint=data_fingerprint(series),
            final_equity=plain(result.final_equity),
            spec_json=json.dumps(spec),
            metrics_json=json.dumps(metrics_part),
            result_json=json.dumps(document),
        )
        async with self.runtime.database.session() as session:
            await BacktestRepository(session).add(row)
        return row.id

    async def list(self, limit: int = 100, offset: int = 0) -> BacktestList:
        """Stored runs, newest first."""
        async with self.runtime.database.read_session() as session:
            rows = await BacktestRepository(session).list(min(limit, MAX_PAGE), offset)
            return BacktestList(backtests=[BacktestSummary(**_summary(row)) for row in rows])

    async def get(self, run_id: str) -> BacktestDetail:
        """One stored run with its spec and result; `NotFoundError` when there is none."""
        async with self.runtime.database.read_session() as session:
            row = await BacktestRepository(session).get(run_id)
            if row is None:
                raise NotFoundError(f"no backtest {run_id!r}; GET /api/backtests lists the stored runs")
            return BacktestDetail(**_summary(row), spec=json.loads(row.spec_json), result=json.loads(row.result_json))


# -- strategies on paper ---------------------------------------------------------------------------

RUNNING, STOPPED, FAILED = "running", "stopped", "failed"
DEPLOYMENTS_CHANNEL = "strategy:deployments"
"""Bus channel a deploy or a stop is announced on (the runner reads the table when it hears one)."""
_ZERO = Decimal(0)


def params_of(row: StrategyDeploymentRow) -> dict[str, str]:
    """The deployment's parameters as given (text)."""
    loaded: dict[str, str] = json.loads(row.params_json)
    return loaded


def strategy_of(row: StrategyDeploymentRow) -> Strategy:
    """A new strategy object for the deployment (raises `StrategyError` when it no longer builds)."""
    return build(row.strategy, row.symbols.split(","), params_of(row))


def _text(value: str | int | float) -> str:
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)


def _checked_strategy(body: StrategyDeploy, symbols: list[str]) -> dict[str, str]:
    """The parameters as text, once the strategy builds with them; 422 naming the field otherwise."""
    cls = STRATEGIES.get(body.strategy)
    if cls is None:
        problem = f"strategy: unknown strategy {body.strategy!r}; use one of {', '.join(STRATEGIES)}"
        raise ValidationFailedError(problem, fields=[problem])
    params = {key: _text(value) for key, value in body.params.items()}
    try:
        build(body.strategy, symbols, params)
    except ParameterError as exc:
        problem = f"params.{exc.parameter}: {exc}"
        raise ValidationFailedError(problem, fields=[problem]) from None
    except StrategyError as exc:
        problem = f"params: {exc}"
        raise ValidationFailedError(problem, fields=[problem]) from None
    return params


def attributed_pnl(
    orders: Sequence[tuple[Order, Sequence[FillEvent]]], marks: Mapping[str, Decimal | None]
) -> tuple[list[StrategyPosition], StrategyPnl]:
    """Positions and P&L of a strategy from its own fills (folded in time order) and the marks."""
    positions: dict[str, PositionState] = {}
    fees = _ZERO
    fills = sorted(((f, o) for o, fs in orders for f in fs), key=lambda pair: (pair[0].ts, pair[0].fill_id))
    for fill, order in fills:
        symbol = order.request.symbol
        held = positions.get(symbol) or PositionState(symbol)
        positions[symbol] = held.apply_fill(order.request.side.value, fill.quantity, fill.price)[0]
        fees += fill.fee
    realized = sum((p.realized_pnl for p in positions.values()), _ZERO)
    unrealized: Decimal | None = _ZERO
    out = []
    for symbol, held in sorted(positions.items()):
        if not held.quantity:
            continue
        mark = marks.get(symbol)
        value = None if mark is None else held.quantity * mark - held.cost
        if value is None:
            unrealized = None
        elif unrealized is not None:
            unrealized += value
        out.append(
            StrategyPosition(
                symbol=symbol,
                quantity=plain(held.quantity),
                cost=plain(held.cost),
                mark=None if mark is None else plain(mark),
                unrealized_pnl=None if value is None else plain(value),
            )
        )
    total = None if unrealized is None else realized + unrealized - fees
    pnl = StrategyPnl(
        realized=plain(realized),
        unrealized=None if unrealized is None else plain(unrealized),
        fees=plain(fees),
        total=None if total is None else plain(total),
    )
    return out, pnl


def _out(row: StrategyDeploymentRow) -> StrategyOut:
    return StrategyOut(
        id=row.id,
        strategy=row.strategy,
        account_id=row.account_id,
        owner_id=row.owner_id,
        symbols=row.symbols.split(","),
        params=params_of(row),
        bar_seconds=row.bar_seconds,
        max_errors=row.max_errors,
        state=row.state,
        order_prefix=row.order_prefix,
        created_at=row.created_at,
        updated_at=row.updated_at,
        stopped_at=row.stopped_at,
        stop_reason=row.stop_reason,
        errors=row.errors,
        consecutive_errors=row.consecutive_errors,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
    )


class StrategyService:
    """Deploy, list, inspect and stop strategies running on paper; the runner's record of errors."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clock = runtime.clock
        self.audit = AuditService(runtime.database, runtime.clock)
        self.trading = TradingService(runtime)
        self.market = MarketDataService(runtime)

    async def deploy(self, principal: Principal, body: StrategyDeploy, caller: Caller) -> StrategyOut:
        """Record a new running deployment (the runner picks it up); 422 naming the field for bad input."""
        instruments = await self.market.instruments()
        symbols: list[str] = []
        for symbol in body.symbols:
            found = instruments.get(symbol) or instruments.get(symbol.upper())
            if found is None:
                problem = f"symbols: unknown symbol {symbol!r}; GET /api/market/instruments lists them"
                raise ValidationFailedError(problem, fields=[problem])
            if found.symbol not in symbols:
                symbols.append(found.symbol)
        params = _checked_strategy(body, symbols)
        now = self.clock.now()
        deployment_id = str(uuid.uuid4())
        row = StrategyDeploymentRow(
            id=deployment_id,
            order_prefix=f"st.{deployment_id.replace('-', '')[:16]}.",
            owner_id=principal.user_id,
            owner_email=principal.email,
            account_id=body.account_id,
            strategy=body.strategy,
            symbols=",".join(symbols),
            params_json=json.dumps(params, sort_keys=True),
            bar_seconds=body.bar_seconds,
            max_errors=body.max_errors,
            state=RUNNING,
            created_at=now,
            updated_at=now,
            errors=0,
            consecutive_errors=0,
        )
        async with self.runtime.database.session() as session:
            account = await BooksService(session, self.clock).account(body.account_id)
            if account is None or account.owner_id != principal.user_id:
                raise NotFoundError(f"no account {body.account_id}")
            await DeploymentRepository(session).add(row)
            detail = {"strategy": body.strategy, "account_id": body.account_id, "symbols": symbols, "params": params}
            await self._stage(session, principal, caller, "strategy.deploy", f"strategy:{deployment_id}", detail)
        wake_chainer(self.runtime)
        await self._announce(deployment_id)
        return await self._status(row)

    async def list(self, principal: Principal, limit: int = 100) -> StrategyList:
        """Your deployments (everyone's with accounts:read:all), newest first, each with its status."""
        owner = None if principal.can(Permission.ACCOUNTS_READ_ALL) else principal.user_id
        async with self.runtime.database.read_session() as session:
            rows = await DeploymentRepository(session).list(owner, min(limit, MAX_PAGE))
            session.expunge_all()  # read after the session ends
        return StrategyList(strategies=[await self._status(row) for row in rows])

    async def get(self, principal: Principal, deployment_id: str) -> StrategyOut:
        """One deployment's status: state, last error, orders, positions and P&L from its fills."""
        return await self._status(await self._visible(principal, deployment_id))

    async def stop(self, principal: Principal, deployment_id: str, caller: Caller) -> StrategyOut:
        """Stop a running deployment (its working orders stay; cancel them as any order); 409 when it is not running."""
        async with self.runtime.database.session() as session:
            repo = DeploymentRepository(session)
            row = await repo.get(deployment_id)
            if row is None or row.owner_id != principal.user_id:
                raise NotFoundError(f"no strategy {deployment_id}")
            if row.state != RUNNING:
                raise ConflictError(f"strategy {deployment_id} is {row.state} already")
            now = self.clock.now()
            row.state, row.stopped_at, row.updated_at = STOPPED, now, now
            row.stop_reason = f"stopped by {principal.email}"
            await session.flush()
            await self._stage(session, principal, caller, "strategy.stop", f"strategy:{deployment_id}", {})
        wake_chainer(self.runtime)
        await self._announce(deployment_id)
        return await self._status(row)

    async def _announce(self, deployment_id: str) -> None:
        """Tell the runner the table changed; when the bus is away it reads the table at its next slow poll."""
        try:
            await self.runtime.bus.publish(DEPLOYMENTS_CHANNEL, deployment_id.encode())
        except Exception as exc:
            backend = unavailable_backend(exc)
            if backend is None:
                raise
            count_outage(backend, "strategy_announce", exc)

    async def _visible(self, principal: Principal, deployment_id: str) -> StrategyDeploymentRow:
        async with self.runtime.database.read_session() as session:
            row = await DeploymentRepository(session).get(deployment_id)
            session.expunge_all()
        if row is None or (row.owner_id != principal.user_id and not principal.can(Permission.ACCOUNTS_READ_ALL)):
            raise NotFoundError(f"no strategy {deployment_id}; GET /api/strategy lists yours")
        return row

    async def _status(self, row: StrategyDeploymentRow) -> StrategyOut:
        out = _out(row)
        orders = await self.trading.orders_with_prefix(row.account_id, row.order_prefix)
        symbols = {order.request.symbol for order, _ in orders}
        snapshot = await self.market.snapshot(symbols) if symbols else None
        marks = {s: snapshot.mark(s) if snapshot is not None else None for s in symbols}
        out.positions, out.pnl = attributed_pnl(orders, marks)
        out.orders = len(orders)
        out.open_orders = sum(1 for order, _ in orders if order.status.is_open)
        out.fills = sum(len(fills) for _, fills in orders)
        out.trading_state = (await self.trading.effective_state(row.account_id))[0].value
        return out

    async def _stage(
        self, session: Any, principal: Principal, caller: Caller, action: str, target: str, detail: dict[str, Any]
    ) -> None:
        await self.audit.stage(
            session,
            action=action,
            outcome="success",
            actor_user_id=principal.user_id,
            actor_api_key_id=principal.api_key_id,
            actor_email=principal.email,
            target=target,
            ip=caller.ip,
            user_agent=caller.user_agent,
            detail=detail,
        )

    # -- the runner's side ---------------------------------------------------------------------------

    async def running(self) -> builtins.list[StrategyDeploymentRow]:
        """Deployments that should be running now."""
        async with self.runtime.database.read_session() as session:
            rows = await DeploymentRepository(session).in_state(RUNNING)
            session.expunge_all()
            return rows

    async def state_of(self, deployment_id: str) -> str | None:
        async with self.runtime.database.read_session() as session:
            row = await DeploymentRepository(session).get(deployment_id)
            return row.state if row is not None else None

    async def record_error(self, deployment_id: str, error: str, *, fatal: bool = False) -> StrategyDeploymentRow | None:
        """Count an error; at the deployment's limit of consecutive errors (or a `fatal` one) it is marked failed
        (and audited)."""
        now = self.clock.now()
        async with self.runtime.database.session() as session:
            row = await DeploymentRepository(session).get(deployment_id)
            if row is None or row.state != RUNNING:
                return row
            row.errors += 1
            row.consecutive_errors += 1
            row.last_error, row.last_error_at, row.updated_at = error[:2000], now, now
            if fatal or row.consecutive_errors >= row.max_errors:
                row.state, row.stopped_at = FAILED, now
                repeated = f"stopped itself after {row.consecutive_errors} errors in a row; the last: {error[:500]}"
                row.stop_reason = error[:500] if fatal else repeated
                await self.audit.stage(
                    session,
                    action="strategy.fail",
                    outcome="failure",
                    actor_user_id=None,
                    target=f"strategy:{deployment_id}",
                    detail={"errors": row.consecutive_errors, "last_error": error[:500]},
                )
            await session.flush()
        wake_chainer(self.runtime)
        return row

    async def keep_bar(self, deployment_id: str, bar: Bar, number: int, *, keep: int) -> None:
        """Store a bar the deployment's host is given (its `number`-th), for its history after a restart; every
        `keep` bars, forget those older than the newest `keep`."""
        async with self.runtime.database.session() as session:
            repository = StrategyBarRepository(session)
            await repository.add(deployment_id, bar, number)
            if number and number % keep == 0:
                await repository.prune(deployment_id, bar.symbol, number - keep)

    async def kept_bars(self, deployment_id: str, symbol: str, limit: int) -> tuple[builtins.list[Bar], int]:
        """The newest `limit` stored bars of `symbol` (oldest first) and the number of the first."""
        async with self.runtime.database.read_session() as session:
            return await StrategyBarRepository(session).last(deployment_id, symbol, limit)

    async def record_ok(self, deployment_id: str) -> None:
        """An event was handled cleanly: the run of consecutive errors ends."""
        async with self.runtime.database.session() as session:
            row = await DeploymentRepository(session).get(deployment_id)
            if row is not None and row.consecutive_errors:
                row.consecutive_errors = 0
                row.updated_at = self.clock.now()
                await session.flush()
