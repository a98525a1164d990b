"""Draw the add-on's store images: icon.png (128x128) and logo.png (250x100).

The motif is a shield holding 3, 2 and 1 dots (three copies, two media, one off-site) in
Home Assistant blue on a transparent background. Shapes are drawn four times larger and
scaled down, which gives smooth edges without any font or external file.

Usage: .venv/bin/python scripts/make_images.py [--out DIR]   (default: the repository root)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

BLUE = (3, 169, 244, 255)  # #03A9F4
WHITE = (255, 255, 255, 255)
CLEAR = (0, 0, 0, 0)
SUPERSAMPLE = 4
REPO = Path(__file__).resolve().parent.parent

# The shield in a 100x100 box: straight top and sides, curved flanks down to a point.
_SHIELD_TOP = [(50.0, 4.0), (90.0, 17.0), (90.0, 46.0)]
_SHIELD_FLANK = [(90.0, 46.0), (88.0, 74.0), (66.0, 88.0), (50.0, 97.0)]  # cubic Bezier
# Rows of 3, 2 and 1 dots: (x, y) centres in the same box, and their radius.
_DOTS = [(31.0, 34.0), (50.0, 34.0), (69.0, 34.0), (40.5, 52.0), (59.5, 52.0), (50.0, 70.0)]
_DOT_RADIUS = 6.5


def _bezier(points: list[tuple[float, float]], steps: int = 48) -> list[tuple[float, float]]:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
    curve = []
    for i in range(steps + 1):
        t = i / steps
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        curve.append((a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3))
    return curve


def _shield_outline() -> list[tuple[float, float]]:
    right = _SHIELD_TOP + _bezier(_SHIELD_FLANK)[1:]
    left = [(100.0 - x, y) for x, y in reversed(right[1:-1])]
    return right + left


def draw_shield(size: int) -> Image.Image:
    """The shield motif as a square RGBA image of `size` pixels."""
    big = size * SUPERSAMPLE
    scale = big / 100.0
    image = Image.new("RGBA", (big, big), CLEAR)
    draw = ImageDraw.Draw(image)
    draw.polygon([(x * scale, y * scale) for x, y in _shield_outline()], fill=BLUE)
    r = _DOT_RADIUS * scale
    for x, y in _DOTS:
        draw.ellipse((x * scale - r, y * scale - r, x * scale + r, y * scale + r), fill=WHITE)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def draw_logo(width: int = 250, height: int = 100) -> Image.Image:
    """The shield followed by the add-on's name, as a wide RGBA image."""
    logo = Image.new("RGBA", (width, height), CLEAR)
    shield = draw_shield(height - 8)
    logo.alpha_composite(shield, (4, 4))
    draw = ImageDraw.Draw(logo)
    font = ImageFont.load_default(size=34)
    left = height + 4
    draw.text((left, height / 2 - 2), "3-2-1", font=font, fill=BLUE, anchor="ls")
    draw.text((left, height / 2 + 34), "Backup", font=font, fill=BLUE, anchor="ls")
    return logo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO, help="directory to write into")
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    draw_shield(128).save(out / "icon.png", optimize=True)
    draw_logo().save(out / "logo.png", optimize=True)
    print(f"wrote {out / 'icon.png'} and {out / 'logo.png'}")


if __name__ == "__main__":
    main()
