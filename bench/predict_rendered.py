"""Accuracy of `python -m mnistlab predict`'s preprocessing on test digits rendered as image
files of other sizes, polarities and margins (the situation of a user's own photo or drawing).

    .venv/bin/python bench/predict_rendered.py RUN_DIR [--count 1000]

Renders the first `count` MNIST test digits as PNG/JPEG files (sizes 40x40 to 300x200,
dark-on-light for half, up to 60 pixels of margin), classifies them through
mnistlab.predict, and prints the accuracy beside the model's accuracy on the same digits
as 28x28 arrays.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mnistlab.data import load_dataset
from mnistlab.predict import predict_images
from mnistlab.results import load_model
from mnistlab.runs import read_json

SIZES = [(40, 40), (56, 56), (100, 100), (200, 140), (90, 120), (300, 200)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a completed run folder")
    parser.add_argument("--count", type=int, default=1000, help="test digits to render (default: 1000)")
    args = parser.parse_args()
    model = load_model(args.run_dir)
    class_names = read_json(Path(args.run_dir) / "config.json")["data"]["class_names"]
    data = load_dataset(read_json(Path(args.run_dir) / "config.json")["config"]["dataset"])
    x, y = data.x_test[: args.count], data.y_test[: args.count]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, digit in enumerate(x):
            image = np.asarray(Image.fromarray(digit).resize(SIZES[i % len(SIZES)], Image.Resampling.BICUBIC))
            image = np.pad(image, 15 * (i % 5))
            if i % 2:
                image = 255 - image
            path = Path(tmp) / f"{i}.{'jpg' if i % 3 == 0 else 'png'}"
            Image.fromarray(image).save(path)
            paths.append(path)
        results = predict_images(model, paths, class_names, top=1)
    predicted = [r["top"][0][0] if "top" in r else None for r in results]
    rendered = np.mean([p == class_names[label] for p, label in zip(predicted, y)])
    direct = np.mean(model.predict(x, verbose=0).argmax(1) == y)
    blank = sum("error" in r for r in results)
    print(f"{args.count} rendered test digits: accuracy {rendered:.4f} through predict "
          f"(the same digits as 28x28 arrays: {direct:.4f}); {blank} refused as blank")


if __name__ == "__main__":
    main()
