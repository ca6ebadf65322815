"""An alpha evaluation as a Rich table, JSON and a PNG (IC per fold, cumulative long-short return)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.table import Table

from tradestack.signals.alpha import Evaluation

SIGNALS = ("model", "momentum", "shuffled")
LABELS = {"model": "LightGBM", "momentum": "momentum 20d", "shuffled": "no skill (shuffled)"}


def _f(value: float, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def folds_table(evaluation: Evaluation) -> Table:
    """IC and RankIC per fold for the model and both baselines, then the overall row."""
    table = Table(title=f"walk-forward, label = {evaluation.horizon}-day forward return, purge {evaluation.purge}, "
                        f"embargo {evaluation.embargo}")  # fmt: skip
    table.add_column("test period")
    table.add_column("days", justify="right")
    for name in SIGNALS:
        table.add_column(f"{LABELS[name]} IC / RankIC", justify="right")
    for fold in evaluation.folds:
        table.add_row(
            f"{fold.test_from} to {fold.test_to}",
            str(int(fold.model["days"])),
            *(f"{_f(getattr(fold, n)['ic'])} / {_f(getattr(fold, n)['rank_ic'])}" for n in SIGNALS),
        )
    overall = evaluation.overall
    table.add_row(
        "[bold]overall[/]",
        str(int(overall["model"]["days"])),
        *(f"{_f(overall[n]['ic'])} / {_f(overall[n]['rank_ic'])}" for n in SIGNALS),
    )
    return table


def summary_table(evaluation: Evaluation) -> Table:
    """All overall metrics, one column per signal."""
    table = Table(title="overall, out of sample")
    table.add_column("metric")
    for name in SIGNALS:
        table.add_column(LABELS[name], justify="right")
    for metric in ("ic", "rank_ic", "icir", "rank_icir", "hit_rate", "long_short_daily", "long_short_total", "turnover"):
        table.add_row(metric, *(_f(evaluation.overall[n][metric]) for n in SIGNALS))
    return table


def write_json(evaluation: Evaluation, path: Path) -> None:
    """The whole evaluation as JSON (NaN as null)."""
    path.write_text(json.dumps(evaluation.to_json(), indent=1))


def write_png(evaluation: Evaluation, path: Path) -> None:
    """IC per fold (bars) and cumulative long-short return (lines) of the three signals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8))
    x = np.arange(len(evaluation.folds))
    width = 0.27
    for i, name in enumerate(SIGNALS):
        values = [getattr(fold, name)["ic"] for fold in evaluation.folds]
        top.bar(x + (i - 1) * width, values, width, label=LABELS[name])
    top.set_xticks(x, [fold.test_from[:7] for fold in evaluation.folds], rotation=45, fontsize=7)
    top.axhline(0, color="black", linewidth=0.5)
    top.set_title("IC per test fold")
    top.legend()
    for name in SIGNALS:
        bottom.plot(np.cumsum(evaluation.daily_long_short[name]), label=LABELS[name])
    bottom.set_title("cumulative long-short return (daily rebalanced, sum of daily returns)")
    bottom.set_xlabel("test day")
    bottom.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
