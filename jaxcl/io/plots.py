"""The PNG figures of a run folder, drawn on matplotlib ``Figure`` objects (no global pyplot state).

* :func:`accuracy_heatmap`: the accuracy matrix ``R[i, j]`` (after experience ``i``, on ``j``).
* :func:`accuracy_over_stream`: accuracy of each experience as the stream goes on (the study's
  Figures 7, 8, 11).
* :func:`matrix_heatmap`: any after-``i``-on-``j`` matrix, e.g. the test MSE of the
  Hypernet-SDE-Flow study (logarithmic colours, the whole matrix shown, one colour scale for maps
  that are compared).
* :func:`series_over_steps`: a per-step series such as the gradient cosine similarity (Figure 12).
* :func:`filters`: convolution filters side by side on one colour scale (Figure 6).
* :func:`image_grid`: rows of sample images, e.g. each experience of the noisy stream (Figure 5).

Each returns the PNG bytes. Values written into cells take black or white against the cell's
colour; experience axes have integer ticks; layouts are constrained, so that nothing is clipped.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def _ink(im, value: float) -> str:
    """Black on light cells, white on dark ones (relative luminance of the cell's colour)."""
    r, g, b, _ = im.cmap(im.norm(value))
    return "k" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "w"


def accuracy_heatmap(matrix: ArrayLike, title: str) -> bytes:
    r = np.asarray(matrix, dtype=float)
    n = r.shape[0]
    shown = np.where(np.tril(np.ones_like(r)) > 0, r, np.nan)
    fig = Figure(figsize=(2.4 + 0.55 * n, 1.6 + 0.5 * n), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(shown, vmin=0.0, vmax=1.0, cmap="viridis")
    if n <= 12:
        for i in range(n):
            for j in range(i + 1):
                ax.text(j, i, f"{r[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color=_ink(im, r[i, j]))
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("evaluated on experience j")
    ax.set_ylabel("after training experience i")
    ax.set_title(title, fontsize=8, wrap=True)
    fig.colorbar(im, ax=ax, label="accuracy")
    return _png(fig)


def matrix_heatmap(matrix: ArrayLike, title: str, *, label: str, log: bool = True,
                   what: str = "task", limits: tuple[float, float] | None = None) -> bytes:
    """``M[i, j]`` (after training ``i``, on ``j``) with its values written in, in a colour that
    stands out from the cell's. ``log`` colours on a logarithmic scale (values must be > 0);
    ``limits`` fixes the colour scale, so that maps drawn with the same limits compare."""
    m = np.asarray(matrix, dtype=float)
    n = m.shape[0]
    fig = Figure(figsize=(2.4 + 0.6 * n, 1.6 + 0.5 * n), layout="constrained")
    ax = fig.subplots()
    low, high = limits if limits is not None else (m.min(), m.max())
    norm = (LogNorm(vmin=max(low, 1e-6), vmax=max(high, 1e-5)) if log else
            Normalize(vmin=low, vmax=high))
    im = ax.imshow(m, cmap="magma", norm=norm)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{m[i, j]:.3g}", ha="center", va="center", fontsize=6,
                    color=_ink(im, m[i, j]), fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel(f"evaluated on {what} j")
    ax.set_ylabel(f"after training {what} i")
    ax.set_title(title, fontsize=8, wrap=True)
    fig.colorbar(im, ax=ax, label=label)
    return _png(fig)


def accuracy_over_stream(matrices: dict[str, np.ndarray], title: str) -> bytes:
    """One panel per strategy, at most four to a row: a line per experience ``j``, ``R[i, j]``
    against ``i >= j``."""
    names = list(matrices)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.0 * cols, 3.4 * rows), layout="constrained")
    grid = fig.subplots(rows, cols, sharey=True, squeeze=False)
    for ax in grid.flat[len(names):]:
        ax.set_visible(False)
    axes = grid.flat[:len(names)]
    for ax, name in zip(axes, names):
        r = np.asarray(matrices[name], dtype=float)
        for j in range(r.shape[0]):
            ax.plot(range(j, r.shape[0]), r[j:, j], marker=".", label=f"exp {j}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("after training experience")
        ax.set_xticks(range(r.shape[0]))  # experiences are integers
        ax.set_ylim(0.0, 1.02)
    for row in grid:
        row[0].set_ylabel("test accuracy")
    if np.asarray(matrices[names[0]]).shape[0] <= 10:
        axes[-1].legend(fontsize=6, loc="lower left")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def series_over_steps(series: dict[str, np.ndarray], ylabel: str, title: str, *,
                      xlabel: str = "training step (after the first experience)",
                      zero_line: bool = True) -> bytes:
    """One line per series; past ten series the colours repeat with another line style, and the
    legend stands outside the axes, so that many strategies stay apart. ``zero_line`` draws
    ``y = 0`` (off: the axis spans the values alone, e.g. cosines near 1)."""
    fig = Figure(figsize=(6.0 if len(series) <= 4 else 8.0, 3.2), layout="constrained")
    ax = fig.subplots()
    styles = ["-", "--", ":", "-."]
    for i, (name, values) in enumerate(series.items()):
        ax.plot(np.asarray(values), lw=0.8, color=f"C{i % 10}", ls=styles[i // 10 % 4],
                label=name)
    if zero_line:
        ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if len(series) <= 4:
        ax.legend(fontsize=7)
    else:
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def learning_curves(panels: dict[str, dict[str, np.ndarray]], experience: np.ndarray,
                    title: str, *, window: int = 10) -> bytes:
    """Training accuracy along every step of a run: one panel per entry of ``panels`` (e.g. one
    per freeze depth), one line per strategy in it, each a moving average over ``window`` steps
    taken inside one experience (it never mixes two), a dotted line where each experience
    begins; ``experience[s]`` is the experience of step ``s``. A name keeps its colour in every
    panel; the legend stands outside the panels."""
    names = list(dict.fromkeys(name for series in panels.values() for name in series))
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    fig = Figure(figsize=(7.5, 2.3 * len(panels) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    experience = np.asarray(experience)
    starts = np.flatnonzero(np.diff(experience, prepend=-1))
    for ax, (panel, series) in zip(axes, panels.items()):
        for name, values in series.items():
            values = np.asarray(values, dtype=float)
            for i, start in enumerate(starts):
                end = starts[i + 1] if i + 1 < len(starts) else len(values)
                part = values[start:end]
                w = min(window, len(part))
                smooth = np.convolve(part, np.ones(w) / w, mode="valid")
                ax.plot(np.arange(start + w - 1, end), smooth, lw=1.0, color=colours[name],
                        marker="." if len(smooth) < 3 else None,
                        label=name if i == 0 else None)
        for start in starts[1:]:
            ax.axvline(start, color="0.6", lw=0.6, ls=":")
        ax.set_ylim(0.0, 1.02)
        ax.set_ylabel(f"train acc. ({window}-step mean)", fontsize=8)
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes[-1].set_xlabel("training step (dotted: a new experience begins)")
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def lines(x: Sequence[float], ys: dict[str, np.ndarray], xlabel: str, ylabel: str, title: str, *,
          errors: dict[str, np.ndarray] | None = None,
          references: dict[str, float] | None = None, xscale: str | None = None,
          yscale: str | None = None) -> bytes:
    """One line per entry of ``ys`` against ``x`` (e.g. learning accuracy against freeze depth);
    ``errors`` gives error bars (half-widths) by the same names, ``references`` dashed
    horizontal lines by label, ``xscale`` and ``yscale`` matplotlib scales (``"symlog"`` keeps
    0 and negative values on a log axis: linear within 1 of 0 on x, 0.01 on y)."""
    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    ax = fig.subplots()
    for name, values in ys.items():
        half = None if errors is None else errors.get(name)
        ax.errorbar(x, np.asarray(values), yerr=None if half is None else np.asarray(half),
                    marker="o", capsize=3, label=name)
    styles = iter(["--", ":", "-."] * 4)
    for label, value in (references or {}).items():
        ax.axhline(value, color="0.3", lw=1.0, ls=next(styles), label=label)
    if xscale == "symlog":
        ax.set_xscale("symlog", linthresh=1.0)
    elif xscale is not None:
        ax.set_xscale(xscale)
    if yscale == "symlog":
        ax.set_yscale("symlog", linthresh=0.01)
    elif yscale is not None:
        ax.set_yscale(yscale)
    if all(isinstance(v, (int, np.integer)) for v in x):  # depths, experiences: no 0.5 ticks
        ax.set_xticks(list(x), [str(v) for v in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def _rows_of_panels(rows: dict[str, np.ndarray], title: str, draw, *, width: float,
                    height: float):
    """A figure of one row of small panels per entry of ``rows`` (labelled by its key on the
    left), ``draw(ax, item)`` filling each panel; panels past a shorter row are left blank.
    Returns the figure, its axes and the last value ``draw`` returned."""
    n = max(len(items) for items in rows.values())
    fig = Figure(figsize=(width * n + 1.7, height * len(rows) + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), n, squeeze=False))
    shown = None
    for r, (name, items) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(items):
                ax.axis("off")
                continue
            shown = draw(ax, items[c])
            if c == 0:
                ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    return fig, axes, shown


def image_grid(rows: dict[str, ArrayLike], title: str) -> bytes:
    """One row of images ``(n, H, W, C)`` per entry of ``rows``, labelled by its key. A stream
    holds normalised images: each is shown rescaled to its own range (min to max), which keeps
    what a transform did to it (solarized, blurred, grey) visible."""
    def draw(ax, image):
        low, high = image.min(), image.max()
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
        return ax.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                         cmap="gray" if image.shape[-1] == 1 else None, vmin=0.0, vmax=1.0)

    rows = {name: np.asarray(images, dtype=float) for name, images in rows.items()}
    fig, _, _ = _rows_of_panels(rows, title, draw, width=1.1, height=1.15)
    return _png(fig)


def filters(rows: dict[str, ArrayLike], title: str) -> bytes:
    """One row of ``(n, h, w)`` convolution filters per entry of ``rows`` (e.g. the same layer
    generated for two tasks), on one colour scale symmetric about 0 for the whole figure, so
    that rows compare weight for weight (the paper's Figure 6)."""
    rows = {name: np.asarray(f, dtype=float) for name, f in rows.items()}
    scale = max(float(np.abs(f).max()) for f in rows.values()) or 1.0
    fig, axes, shown = _rows_of_panels(
        rows, title, lambda ax, f: ax.imshow(f, cmap="RdBu_r", vmin=-scale, vmax=scale),
        width=0.7, height=0.8)
    fig.colorbar(shown, ax=axes, shrink=0.8)
    return _png(fig)
