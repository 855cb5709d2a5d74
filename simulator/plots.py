"""PNG plots of a run, one question per figure: does it learn, what does learning cost, what does it show."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from simulator.runner import RunResult

__all__ = ["write_plots"]

_STYLE = {"oracle": dict(color="black", linestyle="--"), "uniform": dict(color="grey", linestyle=":"),
          "popularity": dict(color="tab:brown"), "greedy": dict(color="tab:orange"),
          "default": dict(color="tab:blue", linewidth=2.2), "test": dict(color="tab:green", linewidth=2.2),
          "linucb": dict(color="tab:purple")}


def _series(result: "RunResult", name: str, key: str) -> tuple[list[float], list[float]]:
    rows = result.curves[name]
    return [r["events"] for r in rows], [r[key] for r in rows]


def _learning_curve(result: "RunResult", path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, rows in result.curves.items():
        x = [r["events"] for r in rows]
        ax.plot(x, [r["ctr"] for r in rows], label=f"{name} ({result.summaries[name]['final_ctr']:.3f})",
                **_STYLE.get(name, {}))
        ax.fill_between(x, [r["ctr_low"] for r in rows], [r["ctr_high"] for r in rows],
                        color=_STYLE.get(name, {}).get("color"), alpha=0.12)
    ax.set(xlabel="events", ylabel=f"click-through rate per {result.window} events (95% CI)",
           title="Learning curve: CTR over time (legend: CTR over the last 10% of events)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _regret(result: "RunResult", path: Path) -> None:
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name in result.curves:
        if name == "oracle":
            continue
        x, y = _series(result, name, "cumulative_regret")
        ax.plot(x, y, label=name, **_STYLE.get(name, {}))
    ax.set(xlabel="events", ylabel="cumulative expected clicks lost to the oracle",
           title="Cumulative regret (flatter is better; a straight line never learns)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_BEYOND = (("diversity", "intra-list diversity (1 - mean genre cosine)"),
           ("novelty", "novelty (mean self-information, bits)"),
           ("serendipity", "serendipity (unexpected clicks per slot)"),
           ("coverage", "catalog coverage (share of items shown)"),
           ("bubble_shown", "genre entropy of what users are shown (bits)"),
           ("bubble_consumed", "genre entropy of what users consume (bits)"))


def _beyond_accuracy(result: "RunResult", path: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (key, title) in zip(axes.flat, _BEYOND):
        for name in result.curves:
            x, y = _series(result, name, key)
            ax.plot(x, y, label=name, **_STYLE.get(name, {}))
        ax.set(title=title, xlabel="events")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(loc="best", fontsize=8)
    fig.suptitle("Beyond accuracy: what each policy shows, over time (falling entropy = a filter bubble)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(result: "RunResult", out: Path) -> list[Path]:
    paths = [out / "learning_curve.png", out / "regret.png", out / "beyond_accuracy.png"]
    _learning_curve(result, paths[0])
    _regret(result, paths[1])
    _beyond_accuracy(result, paths[2])
    return paths
