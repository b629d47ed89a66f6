"""The one plotting helper: a headless figure, consistent colours per method, saved and closed."""

import contextlib
from pathlib import Path

METHOD_COLOURS = {"sft": "#1f77b4", "opd": "#d62728", "rlvr": "#2ca02c"}  # the same method, the same colour, everywhere


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def figure(path: Path, rows: int = 1, cols: int = 1, size=(6.0, 4.0), dpi: int = 110, **options):
    """Yield (fig, axes) and write the figure to `path` when the block ends."""
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=size, **options)
    try:
        yield fig, axes
        if not fig.legends:  # a figure-level legend sits outside the axes; tight bounding box keeps it in the file
            fig.tight_layout()
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


def method_colour(method: str, fallback_index: int = 0) -> str:
    """The colour of a method ('opd (mix α=0.5)' counts as opd), else one of the default cycle."""
    for name, colour in METHOD_COLOURS.items():
        if method.startswith(name):
            return colour
    return f"C{3 + fallback_index % 7}"
