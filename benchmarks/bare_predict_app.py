"""The /predict baseline: a bare FastAPI app that validates the same body and answers a fixed prediction (no auth, no model)."""

from fastapi import FastAPI
from pydantic import BaseModel


class Book(BaseModel):
    bids: list[tuple[float | str, float | str]]
    asks: list[tuple[float | str, float | str]]


class Body(BaseModel):
    symbol: str
    book: Book | None = None


app = FastAPI()


@app.post("/predict")
async def predict(body: Body) -> dict[str, object]:
    return {"symbol": body.symbol, "probability_up": 0.5, "probability_down": 0.5, "direction": "up"}
