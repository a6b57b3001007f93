"""Predicting on your own images: MNIST's preprocessing on rendered test digits of other sizes
and polarities, and images that are not digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.data import load_dataset
from mnistlab.predict import BlankImageError, preprocess_image, to_digit_field
from mnistlab.train import train_and_evaluate


def render(digit: np.ndarray, path, size: tuple[int, int], invert: bool, pad: int = 0) -> None:
    """Save a (28, 28) uint8 digit as an image of `size` (W, H), optionally dark-on-light."""
    image = Image.fromarray(digit).resize(size, Image.Resampling.BICUBIC)
    array = np.pad(np.asarray(image), pad)
    if invert:
        array = 255 - array
    Image.fromarray(array).save(path)


def test_preprocessing_matches_mnist_conventions():
    digit = np.zeros((100, 60), dtype=np.uint8)
    digit[10:90, 25:35] = 255  # a tall bar, far from centre
    field = to_digit_field(255 - digit)  # dark on light
    assert field.shape == (28, 28) and field.dtype == np.uint8
    rows, cols = np.nonzero(field > 50)
    assert rows.max() - rows.min() + 1 <= 21  # fits the 20x20 box (plus interpolation)
    com = np.array([(field * np.arange(28)[:, None]).sum(), (field * np.arange(28)).sum()]) / field.sum()
    assert np.allclose(com, 13.5, atol=0.6)
    assert field[0].max() == 0 and field[:, 0].max() == 0  # background is black


def test_blank_and_unreadable_images(tmp_path):
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(BlankImageError, match="blank.png: no digit found"):
        preprocess_image(tmp_path / "blank.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="text.png: not a readable PNG or JPEG"):
        preprocess_image(tmp_path / "text.png")


def test_predict_rendered_digits(tmp_path, real_data_dir, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    run_dir = train_and_evaluate(make_config("cnn", epochs=1, limit=20000, verbose=0), tmp_path)
    data = load_dataset(limit=60)
    paths = []
    for i, (digit, label) in enumerate(zip(data.x_test, data.y_test)):
        size = [(56, 56), (200, 140), (90, 120)][i % 3]
        path = tmp_path / f"digit{i}_label{label}.{'png' if i % 2 else 'jpg'}"
        render(digit, path, size, invert=bool(i % 2), pad=10 * (i % 4))
        paths.append(path)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "noise.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "black.png")

    code = main(["predict", "--run", str(run_dir), *map(str, paths), str(tmp_path / "noise.png"),
                 str(tmp_path / "black.png")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1  # one image had no digit
    assert len(lines) == len(paths) + 2
    assert "black.png: " in lines[-1] and "no digit found" in lines[-1]
    assert lines[-2].startswith(str(tmp_path / "noise.png")) and lines[-2].count(",") == 2  # top 3, no crash
    correct = sum(line.split(": ")[1].split()[0] == line.split("_label")[1][0] for line in lines[: len(paths)])
    assert correct / len(paths) >= 0.85, lines
