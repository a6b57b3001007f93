"""Digits mnistlab never saw: the ten digits rendered in the fonts that matplotlib ships, in pens of
several widths, turned a little, on paper of several greys, saved as image files and read back
through `python -m mnistlab predict`'s preprocessing; the accuracy of each run named.

    .venv/bin/python bench/predict_fonts.py RUN_DIR [RUN_DIR ...] [--per-digit 40]

Not MNIST, not MNIST-C: a check of how a model reads digits from another source, as a user's own
would be. Every image is drawn from a seeded generator, so two runs see the same images.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnistlab.predict import predict_images
from mnistlab.results import load_model
from mnistlab.runs import read_json


def fonts() -> list[Path]:
    """The text fonts in matplotlib's own data folder: DejaVu Sans, Serif and Mono and STIX General,
    upright, bold and slanted (not the symbol and size-variant fonts, whose digits are not text)."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return sorted(p for p in folder.glob("*.ttf") if p.name.startswith(("DejaVu", "STIXGeneral"))
                  and "Display" not in p.name)


def render(digit: int, font: Path, rng: np.random.Generator) -> Image.Image:
    """One digit, 120x120: a random size and pen width, turned up to ±15°, dark ink on paper of a
    random grey, a little blur and noise."""
    size = int(rng.integers(50, 90))
    image = Image.new("L", (120, 120), 0)
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(font), size)
    draw.text((60, 60), str(digit), fill=255, font=face, anchor="mm", stroke_width=int(rng.integers(0, 4)),
              stroke_fill=255)
    image = image.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))
    ink = np.asarray(image, dtype=np.float64) / 255.0
    paper, pen = rng.uniform(170, 255), rng.uniform(0, 90)
    pixels = paper - ink * (paper - pen) + rng.normal(0, rng.uniform(0, 12), ink.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="completed run folders")
    parser.add_argument("--per-digit", type=int, default=40, help="images of each digit (default: 40)")
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    faces = fonts()
    with tempfile.TemporaryDirectory() as tmp:
        paths, labels = [], []
        for digit in range(10):
            for i in range(args.per_digit):
                path = Path(tmp) / f"{digit}-{i}.png"
                render(digit, faces[int(rng.integers(len(faces)))], rng).save(path)
                paths.append(path)
                labels.append(str(digit))
        print(f"{len(paths)} digits rendered in {len(faces)} fonts (matplotlib's), read through predict:")
        for run_dir in args.run_dirs:
            record = read_json(Path(run_dir) / "config.json")
            results = predict_images(load_model(run_dir), paths, record["data"]["class_names"], top=1)
            right = sum("top" in r and r["top"][0][0] == label for r, label in zip(results, labels))
            print(f"  {record['variant']} ({Path(run_dir).name}): {right} of {len(paths)} "
                  f"({right / len(paths):.3f})")


if __name__ == "__main__":
    main()
