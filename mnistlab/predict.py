"""Classify your own images of a digit: MNIST's own preprocessing, then a trained run's model.

MNIST's digits were size-normalised to fit a 20x20 box (keeping the aspect ratio, with
anti-aliasing) and centred by centre of mass in a 28x28 field; `preprocess_image` does the same
to a PNG or JPEG of any size and either polarity.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

FIT_BOX = 20  # MNIST fits each digit into 20x20 ...
FIELD = 28  # ... and centres it in 28x28
MIN_CONTRAST = 32  # grey levels between background and ink below which an image counts as blank
MAX_PIXELS = 40_000_000  # larger images are refused (a decompression bomb, or not a digit)
# A digit whose ink covers fewer pixels than this, or whose contrast is below FAINT_CONTRAST,
# is predicted with a warning: scaled to 20x20 it is mostly interpolation.
MIN_INK_PIXELS = 30
FAINT_CONTRAST = 64


class BlankImageError(ValueError):
    """The image holds no digit (uniform, or nearly so)."""


def digit_warnings(gray: np.ndarray) -> list[str]:
    """What makes a grayscale image's digit hard to read: too faint, or too small (few ink pixels)."""
    gray = np.asarray(gray, dtype=np.float64)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = np.abs(gray - np.median(border))
    warnings = []
    if ink.max() < FAINT_CONTRAST:
        warnings.append(f"the digit is faint (contrast {ink.max():.0f} of 255)")
    if np.count_nonzero(ink > 0.5 * ink.max()) < MIN_INK_PIXELS:
        warnings.append(f"the digit is tiny ({np.count_nonzero(ink > 0.5 * ink.max())} ink pixels)")
    return warnings


def to_digit_field(gray: np.ndarray, name: str = "<array>") -> np.ndarray:
    """A grayscale image (H, W) of any size -> (28, 28) uint8, white digit on black, as MNIST.

    Inverts a dark-on-light image (judged by its border), crops to the digit, scales it to fit
    20x20 keeping its aspect ratio, and centres its centre of mass. Raises BlankImageError.
    """
    gray = np.asarray(gray, dtype=np.float64)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:  # light background: a dark digit on paper
        gray = 255.0 - gray
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    ink = np.clip(gray - background, 0, None)
    if ink.max() < MIN_CONTRAST:
        raise BlankImageError(f"{name}: no digit found (the image is blank or has almost no contrast)")
    rows, cols = np.nonzero(ink > 0.2 * ink.max())
    crop = ink[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    crop = crop * (255.0 / crop.max())
    height, width = crop.shape
    scale = FIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS),
                        dtype=np.float64)
    field = np.zeros((FIELD, FIELD))
    top, left = (FIELD - fitted.shape[0]) // 2, (FIELD - fitted.shape[1]) // 2
    field[top: top + fitted.shape[0], left: left + fitted.shape[1]] = fitted
    com_row, com_col = ndimage.center_of_mass(field)
    field = ndimage.shift(field, (FIELD / 2 - 0.5 - com_row, FIELD / 2 - 0.5 - com_col), order=1, mode="constant")
    return np.clip(field, 0, 255).round().astype(np.uint8)


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """A PNG/JPEG as (H, W) uint8 grayscale, as a person sees it: EXIF orientation applied (phone
    photos), transparency composited onto white (a drawing canvas's black strokes on a transparent
    background). Raises ValueError naming the file for a file that is not an image or is larger
    than MAX_PIXELS."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{path}: {image.width}x{image.height} pixels, more than the "
                                 f"{MAX_PIXELS:,} accepted; crop or shrink the image to the digit")
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, rgba)
            return np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable PNG or JPEG image ({e})") from None


def preprocess_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG/JPEG and return (28, 28) uint8 as MNIST. Raises ValueError (naming the file)
    for a file that is not an image or too large, BlankImageError for an image without a digit."""
    return to_digit_field(read_gray(path), str(path))


def predict_images(model, paths, class_names, top: int = 3) -> list[dict]:
    """Top-`top` classes for each image file. Returns one dict per path: `path`, and either
    `top` (a list of (class name, probability)) and `warnings` (faint or tiny digit), or `error`
    (blank, unreadable or too large an image; the other images go on). Raises ValueError if
    `class_names` does not name every one of the model's outputs (a damaged run record)."""
    outputs = model.output_shape[-1]
    if not isinstance(class_names, list | tuple) or len(class_names) != outputs \
            or not all(isinstance(name, str) for name in class_names):
        raise ValueError(f"the run's class_names ({class_names!r:.80}) do not name the model's {outputs} "
                         "classes: its config.json is damaged")
    results, batch, index = [], [], []
    for path in paths:
        try:
            gray = read_gray(path)
            batch.append(to_digit_field(gray, str(path)))
            index.append(len(results))
            results.append({"path": str(path), "warnings": digit_warnings(gray)})
        except ValueError as e:
            results.append({"path": str(path), "error": str(e)})
    if batch:
        probabilities = model.predict(np.stack(batch), verbose=0)  # raw pixels: the model scales them
        for i, p in zip(index, probabilities):
            best = np.argsort(-p)[:top]
            results[i]["top"] = [(class_names[k], float(p[k])) for k in best]
    return results
