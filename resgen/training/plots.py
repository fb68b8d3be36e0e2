"""Pictures a person looks at: sample grids and loss curves, drawn with Pillow alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from einops import rearrange
from PIL import Image, ImageDraw

from resgen.files import atomic_write, check_output_file
from resgen.typing import Images

__all__ = ["WRITABLE_IMAGE_SUFFIXES", "save_image_grid", "save_loss_plot"]

WRITABLE_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""The file types a picture can be saved as; the suffix picks the format."""

_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def _save_atomic(image: Image.Image, path: Path) -> None:
    """Save ``image`` in the format its suffix names (whole or not at all)."""
    check_output_file(path, WRITABLE_IMAGE_SUFFIXES)
    Image.init()
    image_format = Image.registered_extensions()[path.suffix.lower()]
    atomic_write(path, lambda tmp: image.save(tmp, format=image_format))


def save_image_grid(images: Images, path: str | Path, *, rows: int, scale: int = 2) -> None:
    """Save ``images`` ``[n, channels, h, w]`` in ``[-1, 1]`` as a grid of ``rows`` rows.

    Images fill the grid row by row; ``n`` must be a multiple of ``rows``. Each pixel becomes a
    ``scale x scale`` block so small images stay visible. The file's suffix picks its format
    (:data:`WRITABLE_IMAGE_SUFFIXES`: PNG, JPEG, WebP, BMP or TIFF).
    """
    n = images.shape[0]
    if rows < 1 or n % rows:
        raise ValueError(f"{n} images cannot fill {rows} rows evenly")
    pixels = ((images.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    grid = rearrange(pixels, "(r c) ch h w -> (r h) (c w) ch", r=rows)
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    mode_image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    _save_atomic(mode_image, Path(path))


def save_loss_plot(
    curves: dict[str, list[tuple[int, float]]],
    path: str | Path,
    *,
    size: tuple[int, int] = (900, 300),
    held_out: dict[str, list[tuple[int, float]]] | None = None,
) -> None:
    """Save one panel per curve (``name -> [(step, loss), ...]``) side by side as a PNG.

    ``held_out`` adds a second curve (in grey, e.g. the loss on held-out data) to the panel of
    the same name; both share the panel's axes.
    """
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        raise ValueError("no loss curve to plot")
    held_out = {k: v for k, v in (held_out or {}).items() if v}
    if unknown := set(held_out) - set(curves):
        raise ValueError(f"held-out curves without a training curve: {sorted(unknown)}")
    width, height = size
    panel = width // len(curves)
    image = Image.new("RGB", (panel * len(curves), height), "white")
    draw = ImageDraw.Draw(image)
    margin_left, margin_bottom, margin_top = 48, 24, 22
    for index, (name, points) in enumerate(curves.items()):
        x0 = index * panel
        both = points + held_out.get(name, [])
        steps = [s for s, _ in both]
        values = [v for _, v in both]
        lo, hi = min(values), max(values)
        if math.isclose(lo, hi):
            lo, hi = lo - 1.0, hi + 1.0
        s_lo, s_hi = min(steps), max(max(steps), min(steps) + 1)
        left, right = x0 + margin_left, x0 + panel - 10
        top, bottom = margin_top, height - margin_bottom
        draw.rectangle([left, top, right, bottom], outline="#888888")
        title = f"{name} loss" + (" (grey: held out)" if name in held_out else "")
        draw.text((left, 4), title, fill="black")
        draw.text((x0 + 2, top), f"{hi:.3g}", fill="#444444")
        draw.text((x0 + 2, bottom - 10), f"{lo:.3g}", fill="#444444")
        draw.text((left, bottom + 6), f"{s_lo}", fill="#444444")
        draw.text((right - 40, bottom + 6), f"step {s_hi}", fill="#444444")
        for series, colour in (
            (points, _COLOURS[index % len(_COLOURS)]),
            (held_out.get(name, []), "#777777"),
        ):
            xy = [
                (
                    left + (s - s_lo) / (s_hi - s_lo) * (right - left),
                    bottom - (v - lo) / (hi - lo) * (bottom - top),
                )
                for s, v in series
            ]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            elif xy:
                x, y = xy[0]
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    _save_atomic(image, Path(path))
