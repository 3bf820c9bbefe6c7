"""A picture of each sheet, drawn with matplotlib from the marks :mod:`tableau.sheets` computes,
so a user sees what the dashboards show before opening Tableau.

The layout follows the sheet's shelves: measures on a shelf are separate panes (as ``+`` makes
them in Tableau), a dimension on the columns shelf splits the panes, the colour dimension draws
one line (or bar segment) per member, and a text sheet is a crosstab.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tableau.documents import Sheet, Shelf  # noqa: E402
from tableau.sheets import column_name  # noqa: E402

MAX_LEGEND = 16
MAX_BARS = 40  # rows of a bar chart drawn (the largest by absolute value first)


def file_name(sheet: Sheet) -> str:
    """``Backtest risk (VaR)`` -> ``backtest-risk-var.png``."""
    return re.sub(r"[^a-z0-9]+", "-", sheet.name.lower()).strip("-") + ".png"


def _label(shelf: Shelf, captions: dict[str, str]) -> str:
    caption = captions.get(shelf.column, shelf.column)
    return {"Sum": f"SUM({caption})", "Avg": f"AVG({caption})"}.get(shelf.derivation, caption)


def _empty(ax, why: str | None) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, f"No marks: {why}" if why else "No marks", ha="center", va="center", fontsize=12, color="grey")


def _line(fig, sheet: Sheet, frame: pd.DataFrame, captions: dict[str, str]) -> None:
    measures = [s for s in sheet.rows if s.is_measure]
    x = column_name(sheet.cols[0])
    color = column_name(sheet.color) if sheet.color else None
    axes = fig.subplots(len(measures), 1, sharex=True, squeeze=False)[:, 0]
    groups = list(frame.groupby(color, sort=True)) if color else [(None, frame)]
    for ax, shelf in zip(axes, measures):
        for key, part in groups:
            ax.plot(part[x], part[column_name(shelf)], lw=1.2, label=None if key is None else str(key))
        ax.set_ylabel(_label(shelf, captions), fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(_label(sheet.cols[0], captions), fontsize=8)
    if color and len(groups) <= MAX_LEGEND:
        axes[0].legend(fontsize=6, ncol=2, loc="best", title=captions.get(sheet.color.column), title_fontsize=7)


def _bar(fig, sheet: Sheet, frame: pd.DataFrame, captions: dict[str, str]) -> None:
    row_dims = [column_name(s) for s in sheet.rows if not s.is_measure]
    split = next((s for s in sheet.cols if not s.is_measure), None)
    measures = [s for s in sheet.cols if s.is_measure]
    splits = sorted(frame[column_name(split)].dropna().unique()) if split else [None]
    frame = frame.assign(_label=frame[row_dims].astype(str).agg(" / ".join, axis=1))
    first = column_name(measures[0])
    keep = frame.groupby("_label")[first].apply(lambda v: v.abs().sum()).nlargest(MAX_BARS).index
    labels = sorted(set(keep))
    axes = fig.subplots(1, len(splits) * len(measures), sharey=True, sharex="all" if len(measures) == 1 else "none",
                        squeeze=False)[0]
    color = column_name(sheet.color) if sheet.color else None
    members = sorted(frame[color].dropna().unique()) if color else [None]
    palette = {m: f"C{i % 10}" for i, m in enumerate(members)}
    for j, (member, shelf) in enumerate((m, s) for m in splits for s in measures):
        ax = axes[j]
        part = frame if member is None else frame[frame[column_name(split)] == member]
        left = pd.Series(0.0, index=labels)
        for hue in members:
            values = (part if hue is None else part[part[color] == hue]).groupby("_label")[column_name(shelf)].sum()
            values = values.reindex(labels).fillna(0.0)
            ax.barh(labels, values, left=left, color=palette[hue], label=None if hue is None else str(hue))
            left += values
        title = _label(shelf, captions) + ("" if member is None else f"\n{member}")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    if color:
        axes[0].legend(fontsize=7, title=captions.get(sheet.color.column), title_fontsize=7)


def _text(fig, sheet: Sheet, frame: pd.DataFrame, captions: dict[str, str]) -> None:
    rows = [column_name(s) for s in sheet.rows]
    cols = [column_name(s) for s in sheet.cols]
    table = frame.pivot_table(index=rows, columns=cols, values=column_name(sheet.text), aggfunc="sum", dropna=False)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    cells = [[f"{v:,.3g}" if pd.notna(v) else "" for v in row] for row in table.to_numpy()]
    shown = ax.table(cellText=cells, rowLabels=[" / ".join(map(str, k)) if isinstance(k, tuple) else str(k)
                                                 for k in table.index],
                     colLabels=[str(c) for c in table.columns], loc="center", fontsize=7)
    shown.auto_set_font_size(False)
    shown.set_fontsize(7)


def draw(sheet: Sheet, frame: pd.DataFrame, captions: dict[str, str], path: Path, empty_means: str | None = None) -> Path:
    """Draw ``sheet`` from its marks ``frame`` into the PNG ``path`` (``empty_means``: what to
    say when there are none)."""
    bars = len(frame[[column_name(s) for s in sheet.rows]].drop_duplicates()) if sheet.mark == "Bar" else 0
    height = 4.5 if sheet.mark != "Bar" else max(3.0, min(9.0, 0.3 * min(bars, MAX_BARS) + 1.5))
    fig = plt.figure(figsize=(9, height), dpi=80, layout="constrained")
    fig.suptitle(sheet.name, fontsize=11, x=0.01, ha="left")
    if frame.empty:
        _empty(fig.add_subplot(1, 1, 1), empty_means)
    else:
        {"Line": _line, "Bar": _bar, "Text": _text}[sheet.mark](fig, sheet, frame, captions)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
