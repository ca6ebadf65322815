"""Model artifacts on disk: one directory per version under ``<data_dir>/models/<kind>/<version>/``.

A directory holds ``model.txt`` (LightGBM's text format), ``metadata.json`` and, for evaluated
models, ``report.json`` and ``report.png``. The SHA-256 of ``model.txt`` is stored in the database;
`load_model` refuses a file whose digest differs (tampered, truncated or swapped).

While `tradestack up`'s first start trains the first alpha model (in a process of its own),
``<data_dir>/models/first-start.pid`` names the process doing it: the API then says a model is on
its way instead of that none exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradestack.core.errors import ServiceUnavailableError

if TYPE_CHECKING:
    import lightgbm as lgb

MODEL_FILE = "model.txt"
FIRST_TRAINING_FILE = "first-start.pid"


def directory(data_dir: Path, kind: str, version: str) -> Path:
    """Where a version's files live."""
    return data_dir / "models" / kind / version


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_model(target: Path, model_text: str, metadata: dict[str, Any]) -> str:
    """Write the model (text: LightGBM's format, or JSON coefficients) and its metadata into `target`; returns its SHA-256."""
    target.mkdir(parents=True, exist_ok=True)
    model = target / MODEL_FILE
    model.write_text(model_text)
    (target / "metadata.json").write_text(json.dumps(metadata, indent=1, default=str))
    return sha256_of(model)


def load_model(target: Path, expected_sha256: str) -> lgb.Booster:
    """The LightGBM model in `target` after checking its digest; 503 with the reason when missing or altered."""
    import lightgbm as lgb  # slow to import (scikit-learn, scipy, pandas): only when a model is served

    return lgb.Booster(model_str=load_text(target, expected_sha256))


def load_text(target: Path, expected_sha256: str) -> str:
    """The model file's text after checking its digest; 503 with the reason when missing or altered."""
    model = target / MODEL_FILE
    if not model.is_file():
        raise ServiceUnavailableError(f"model file {model} is missing: retrain with `tradestack signals train`")
    text = model.read_bytes()
    actual = hashlib.sha256(text).hexdigest()
    if actual != expected_sha256:
        raise ServiceUnavailableError(
            f"model file {model} does not match its recorded fingerprint ({actual[:12]} != {expected_sha256[:12]}): "
            "it was changed after training; promote another version or retrain"
        )
    return text.decode()


def mark_first_training(data_dir: Path, pid: int) -> None:
    """Record that process `pid` is training (or about to train) the first model: its pid and its start time, so
    that a marker left by a killed trainer is not taken for a live one when another process gets the pid later."""
    marker = data_dir / "models" / FIRST_TRAINING_FILE
    marker.parent.mkdir(parents=True, exist_ok=True)
    started = _started(pid)
    marker.write_text(f"{pid} {started}" if started is not None else str(pid))


def clear_first_training(data_dir: Path) -> None:
    """The first training is over (done, failed or stopped)."""
    (data_dir / "models" / FIRST_TRAINING_FILE).unlink(missing_ok=True)


def first_training_in_progress(data_dir: Path) -> bool:
    """Whether the process the marker names is alive and is the one that wrote it (a marker left by a killed process
    is ignored, even once its pid belongs to another process)."""
    try:
        fields = (data_dir / "models" / FIRST_TRAINING_FILE).read_text().split()
        pid = int(fields[0])
        recorded = int(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    stat = _stat(pid)
    if stat is None:
        return True  # no /proc to tell more: alive is all we know
    if stat[0] == "Z":  # a zombie (exited, not yet reaped by its parent) is not training any more
        return False
    return recorded is None or stat[1] == recorded


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, from /proc; None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5): the name, which may hold spaces, is cut off
    except (OSError, IndexError, ValueError):
        return None


def _started(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat is not None else None
