"""What the report's figures and the live page's panels are drawn with: the series of one
model, matplotlib set up for files, the colours and the panel layout. The tasks draw
their own figures (engine/tasks) with these; the report and the live page put them together.
"""

from __future__ import annotations

import dataclasses
import html
import io
import math
import types
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # matplotlib loads only when a figure is drawn (see _pyplot)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclasses.dataclass
class ModelSeries:
    """One model's figures over the records, as arrays aligned on the records that have them.

    >>> import numpy as np
    >>> s = ModelSeries("m", "regression", "ridge", np.array([0.0, 1.0]), np.array([10.0, 20.0]), {"loss": np.array([0.5, 0.4])}, {}, {})
    >>> float(s.values["loss"][-1])
    0.4
    """

    name: str
    task: str
    learner: str
    ts: NDArray[np.float64]
    rounds: NDArray[np.float64]
    values: dict[str, NDArray[np.float64]]
    groups: dict[str, dict[str, NDArray[np.float64]]]
    final: dict[str, Any]


def _pyplot() -> types.ModuleType:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("regretflow report: drawing needs matplotlib; install the plot extra: pip install 'regretflow[plot]'") from None
    matplotlib.use("Agg")
    # labels come from events and logs: "$...$" in a class label is text, never mathtext to parse
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})  # no version stamp: reproducible bytes
    _pyplot().close(fig)
    return buf.getvalue()


def _group_order(labels: list[str]) -> list[str]:
    return (["all"] if "all" in labels else []) + [g for g in labels if g != "all"]


# Okabe-Ito: eight colours that stay apart for common colour-vision deficiencies; a panel
# never holds more series than this (MAX_SERIES), the rest go to further panels.
COLOURS = ("#000000", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
MAX_SERIES = len(COLOURS)


def _by_name(labels: list[str]) -> list[tuple[str, list[str]]]:
    """Group labels ``name=value`` by name, at most ``MAX_SERIES - 1`` per chunk (``all`` joins every chunk)."""
    names: dict[str, list[str]] = {}
    for label in labels:
        if label != "all":
            names.setdefault(label.split("=", 1)[0], []).append(label)
    chunks: list[tuple[str, list[str]]] = []
    for name, members in names.items():
        for start in range(0, len(members), MAX_SERIES - 1):
            chunks.append((name, members[start : start + MAX_SERIES - 1]))
    return chunks


def _grid(plt: types.ModuleType, n_panels: int, cols: int = 3, width: float = 5.2, height: float = 3.9) -> tuple[Figure, list[Axes]]:
    cols = max(1, min(cols, n_panels))
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[n_panels:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n_panels]


def _legend_below(ax: Axes, ncol: int = 3) -> None:
    """The legend under the axes, never over the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(ncol, len(labels)), fontsize=8, frameon=False)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return html.escape(str(v))


def _group_panels(values: dict[str, float], what: str, unit: str) -> list[dict[str, Any]]:
    """Split ``{"all": v, "sex=female": v, ...}`` into one panel per group name, each with ``all``."""
    by_name: dict[str, dict[str, float]] = {}
    for label, v in values.items():
        if label == "all":
            continue
        name = label.split("=", 1)[0]
        by_name.setdefault(name, {})[label] = v
    if not by_name:
        return [{"title": what, "unit": unit, "series": {"all": values.get("all")}}]
    panels = []
    for name, series in by_name.items():
        labels = list(series)
        for start in range(0, len(labels), MAX_SERIES - 1):
            chunk = {"all": values.get("all"), **{k: series[k] for k in labels[start : start + MAX_SERIES - 1]}}
            panels.append({"title": f"{what} by {name}", "unit": unit, "series": chunk})
    return panels
