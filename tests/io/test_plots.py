"""The run folders' figures, rendered small: readable ink, integer experience ticks, shared
colour scales where maps are compared, titles inside the figure."""

import io

import numpy as np
from matplotlib.image import imread

from jaxcl.io import plots


def _image(png: bytes) -> np.ndarray:
    assert png[:4] == b"\x89PNG"
    return imread(io.BytesIO(png))


def test_cell_ink_stands_out_from_the_cell():
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    im = ScalarMappable(Normalize(0.0, 1.0), "viridis")
    assert plots._ink(im, 1.0) == "k"  # yellow cell: black ink (white on yellow was unreadable)
    assert plots._ink(im, 0.0) == "w"  # dark purple cell: white ink


def test_heatmaps_share_a_scale_and_have_integer_ticks(monkeypatch):
    seen = []
    real = plots._png

    def keep(fig):
        seen.append(fig)
        return real(fig)

    monkeypatch.setattr(plots, "_png", keep)
    a = np.array([[0.01, 0.5], [0.02, 0.03]])
    b = np.array([[1.0, 2.0], [3.0, 4.0]])
    limits = (0.01, 4.0)
    for m in (a, b):
        _image(plots.matrix_heatmap(m, "MSE of a model with a long title", label="test MSE",
                                    limits=limits))
    scales = [fig.axes[0].images[0].norm for fig in seen]
    assert all((n.vmin, n.vmax) == limits for n in scales)
    _image(plots.accuracy_heatmap(np.tril(np.full((3, 3), 0.9)), "HN-2 (mean over seeds [0])"))
    _image(plots.accuracy_over_stream({"Naive": np.tril(np.full((3, 3), 0.8)),
                                       "LR-2": np.tril(np.full((3, 3), 0.7))}, "split_benchmark"))
    _image(plots.lines([0, 1, 2], {"Frozen-k": [0.9, 0.8, 0.7]}, "frozen blocks k", "acc", "t"))
    for fig in seen[2:]:
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            ticks = ax.get_xticks()
            assert np.allclose(ticks, np.round(ticks)), ticks  # no 0.5 ticks on experiences
    for fig in seen:  # titles inside the figure: the layout does not clip them
        fig.canvas.draw()
        box = fig.bbox
        for ax in fig.axes:
            title = ax.title.get_window_extent()
            assert box.x0 - 1 <= title.x0 and title.x1 <= box.x1 + 1, ax.title.get_text()
