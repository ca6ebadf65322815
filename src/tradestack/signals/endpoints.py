"""Signals (`/api/trading/signals`) and the model registry (`/api/models`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from tradestack.identity.deps import authorize, count_caller_limit, require
from tradestack.identity.permissions import Permission
from tradestack.identity.service import Principal
from tradestack.kit.runtime import Runtime
from tradestack.kit.web import CallerLimit, RuntimeDep, caller_limit, hot_body, hot_path
from tradestack.signals.schemas import (
    AccuracyList,
    ModelList,
    PredictionOut,
    PredictRequest,
    SignalList,
    SignalOut,
    SignalRequest,
)
from tradestack.signals.service import DEFAULT_PREDICT_LIMIT, KINDS, PredictorService, SignalService, live_accuracy

signals = APIRouter(prefix="/api/trading/signals", tags=["signals"])
models = APIRouter(prefix="/api/models", tags=["signals"])
predict = APIRouter(tags=["signals"])
Reader = Annotated[Principal, require(Permission.MARKET_DATA_READ)]
_REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "No promoted model (while the first start trains the first one: with Retry-After), "
        "or the latest bar is older than max_age_days"
    },
    422: {"description": "Unknown symbol, or not in the model's universe on the as-of day"},
    503: {"description": "The promoted model's file is missing or does not match its fingerprint"},
}


@signals.post("", response_model=SignalOut, summary="One symbol's alpha signal from the promoted model", responses=_REFUSALS)
async def signal(runtime: RuntimeDep, _: Reader, body: SignalRequest) -> SignalOut:
    return await SignalService(runtime).signal(body.symbol, max_age_days=body.max_age_days)


@signals.get(
    "/accuracy",
    response_model=AccuracyList,
    summary="Live accuracy of each model version served (alpha calls and order-book predictions)",
)
async def accuracy(runtime: RuntimeDep, _: Reader) -> AccuracyList:
    return AccuracyList(models=await live_accuracy(runtime))


@signals.get("", response_model=SignalList, summary="The promoted model's universe ranked", responses=_REFUSALS)
async def ranked(
    runtime: RuntimeDep,
    _: Reader,
    universe: Annotated[
        str | None, Query(max_length=400, description="Comma-separated symbols to keep; all when absent.")
    ] = None,
    max_age_days: Annotated[int | None, Query(ge=0, le=36_500)] = None,
) -> SignalList:
    service = SignalService(runtime)
    answer = await service.ranked(max_age_days=max_age_days)
    if universe:
        from tradestack.marketdata.service import MarketDataService

        wanted = set(await MarketDataService(runtime).parse_symbols(universe))
        answer = answer.model_copy(update={"signals": [s for s in answer.signals if s.symbol in wanted]})
    return answer


@models.get("", response_model=ModelList, summary="Registered signal models with their out-of-sample metrics")
async def list_models(
    runtime: RuntimeDep, _: Reader, kind: Annotated[str | None, Query(description=f"One of {', '.join(KINDS)}.")] = None
) -> ModelList:
    if kind is not None and kind not in KINDS:
        from tradestack.core.errors import ValidationFailedError

        raise ValidationFailedError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return ModelList(models=await SignalService(runtime).models(kind))


PREDICT_LIMIT = CallerLimit("predict", DEFAULT_PREDICT_LIMIT)


async def _predict_answer(request: Request, principal: Principal, body: PredictRequest) -> Response:
    runtime: Runtime = request.app.state.runtime
    # Counted by the rate-limit middleware with the other limits for a bearer token it has verified.
    headers = await count_caller_limit(request, principal, PREDICT_LIMIT)
    answer = await PredictorService(runtime).predict_json(body.symbol, body.book, body.previous)
    return Response(answer, media_type="application/json", headers=headers)


async def _predict_hot(request: Request) -> Response | None:
    body = await hot_body(request, PredictRequest)
    if body is None:
        return None
    principal = await authorize(request, Permission.MARKET_DATA_READ)
    return await _predict_answer(request, principal, body)


@predict.post(
    "/predict",
    response_model=PredictionOut,
    summary="Probability that the mid price rises over the next book updates",
    responses={
        409: {"description": "No promoted order-book model"},
        422: {"description": "Unknown symbol, no live book for it, or a malformed provided book"},
        429: {"description": "More than the /predict rate limit for this API key or user"},
        503: {"description": "The promoted model's file is missing or does not match its fingerprint"},
    },
)
@hot_path(_predict_hot)
@caller_limit(PREDICT_LIMIT.label, PREDICT_LIMIT.limit)
async def predict_move(request: Request, principal: Reader, body: PredictRequest) -> Response:
    # Serialised by the service (the response schema stays PredictionOut): no second validation.
    return await _predict_answer(request, principal, body)
