"""The baseline: a bare FastAPI app with the same route, served with the same uvicorn settings."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/api/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
