"""Pictures of single structures: ViennaRNA's drawing of a structure (SVG), a dot plot of pair
probabilities against the decoded structure (PNG), and structures drawn into a matplotlib
panel on ViennaRNA's layout (the evaluation's gallery).

The layout is ViennaRNA's own (``RNA.svg_rna_plot`` for the SVG, ``RNA.get_xy_coordinates``
for the panels, both RNAplot's default layout), never a home-made one. ViennaRNA lays out
nested structures: pseudoknotted pairs (``structures.split_pseudoknots``) are left out of the
SVG and drawn as extra chords on the panels.

Figures are built with the object API on an Agg canvas (no pyplot state, no display).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from genesis_rna.atomic import atomic_path
from genesis_rna.structures import Pair, pairs_to_dot_bracket, split_pseudoknots

DOT_PLOT_INCHES = 6.0
DOT_PLOT_DPI = 100
DOT_PLOT_PIXELS = int(DOT_PLOT_INCHES * DOT_PLOT_DPI)  # the PNG is this many pixels square
LETTERS_UP_TO = 120  # nucleotide letters are drawn on panels of sequences up to this length
TITLE_CHARS = 60  # longer titles are cut (with '...') so they fit the figure


def _short(title: str) -> str:
    return title if len(title) <= TITLE_CHARS else title[:TITLE_CHARS - 3] + "..."


def _nested_dot_bracket(length: int, pairs: Iterable[Pair]) -> str:
    nested, _ = split_pseudoknots(pairs)
    return pairs_to_dot_bracket(nested, length)


def draw_structure_svg(path: str | Path, sequence: str, pairs: Iterable[Pair]) -> Path:
    """ViennaRNA's SVG drawing (``RNA.svg_rna_plot``) of the structure's nested pairs."""
    import RNA

    path = Path(path)
    db = _nested_dot_bracket(len(sequence), pairs)
    with atomic_path(path) as tmp:
        if not RNA.svg_rna_plot(sequence, db, str(tmp)):
            raise RuntimeError(f"ViennaRNA could not draw {path}")
    return path


def draw_dot_plot(path: str | Path, sequence: str, probs: tuple[np.ndarray, np.ndarray, np.ndarray],
                  pairs: Iterable[Pair], title: str) -> Path:
    """A ``DOT_PLOT_PIXELS``-square PNG: the model's pair probabilities (0-based ``i < j``,
    ``p``) in the upper-right triangle, the decoded structure's pairs in the lower-left one
    (as RNAfold -p's dot plot puts probabilities above and the MFE structure below)."""
    n = len(sequence)
    upper = np.full((n, n), np.nan)
    i, j, p = (np.asarray(a) for a in probs)
    upper[i, j] = p
    lower = np.full((n, n), np.nan)
    for a, b in pairs:
        lower[max(a, b), min(a, b)] = 1.0
    fig = Figure(figsize=(DOT_PLOT_INCHES, DOT_PLOT_INCHES), dpi=DOT_PLOT_DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    extent = (0.5, n + 0.5, n + 0.5, 0.5)  # 1-based positions, row 1 at the top
    shown = ax.imshow(upper, cmap="Blues", vmin=0, vmax=1, extent=extent,
                      interpolation="nearest")
    ax.imshow(lower, cmap="Reds", vmin=0, vmax=1.2, extent=extent, interpolation="nearest")
    ax.plot([0.5, n + 0.5], [0.5, n + 0.5], color="grey", linewidth=0.6)
    ax.set_xlim(0.5, n + 0.5)
    ax.set_ylim(n + 0.5, 0.5)
    ax.set_xlabel("position (nt)")
    ax.set_ylabel("position (nt)")
    ax.set_title(f"{_short(title)}\nupper right: model pair probability; lower left: decoded "
                 "structure", fontsize=9)
    fig.colorbar(shown, ax=ax, shrink=0.7, label="pair probability (model)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DOT_PLOT_DPI)
    return Path(path)


def layout_xy(sequence: str, pairs: Iterable[Pair]) -> np.ndarray:
    """[L, 2] coordinates of each base in ViennaRNA's layout of the nested pairs."""
    import RNA

    db = _nested_dot_bracket(len(sequence), pairs)
    coords = RNA.get_xy_coordinates(db)
    return np.array([(coords.get(k).X, coords.get(k).Y) for k in range(len(sequence))])


def draw_structure_panel(ax: Axes, sequence: str, pairs: Sequence[Pair],
                         pair_colors: Sequence[str], title: str) -> None:
    """The structure on ViennaRNA's layout: backbone grey, each pair a chord in its colour
    (``pair_colors[k]`` for ``pairs[k]``), letters on short sequences."""
    xy = layout_xy(sequence, pairs)
    ax.plot(xy[:, 0], xy[:, 1], color="0.6", linewidth=0.8, zorder=1)
    if pairs:
        chords = [(xy[a], xy[b]) for a, b in pairs]
        ax.add_collection(LineCollection(chords, colors=list(pair_colors), linewidths=1.6,
                                         zorder=2))
    if len(sequence) <= LETTERS_UP_TO:
        for (x, y), base in zip(xy, sequence, strict=True):
            ax.text(x, y, base, fontsize=5, ha="center", va="center", zorder=3)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=1, color="0.4", zorder=3)
    ax.plot(*xy[0], marker="o", markersize=4, color="black", zorder=4)  # the 5' end
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title("\n".join(_short(line) for line in title.split("\n")), fontsize=8)
