"""MNIST-C-style corruptions regenerated offline from the MNIST test images, and their on-disk cache.

The 15 corruptions of MNIST-C (Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for Computer
Vision", arXiv:1906.02337), rewritten from the `corruptions.py` the authors released
(github.com/google-research/mnist-c), each at the severity that file applies by default (its
function's `severity=` argument) and with the same kind of random draw per image. The draws
themselves differ from the published files, so tables and figures name this set LABEL, never
"MNIST-C".

Written with numpy and scipy only (no TensorFlow, ImageMagick, OpenCV or Wand) and vectorised: no
Python loop runs over images or single pixels (glass blur steps through its 26 rows, motion blur
through its 21 kernel taps). Where this differs from MNIST-C's code, the corruption's docstring
says so. Results are rounded to the nearest uint8 at the end: the published files are uint8, and
MNIST-C's code does not show how its float32 results were converted.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import matplotlib.pyplot as plt
import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

LABEL = "MNIST-C-style (regenerated)"
# MNIST-C's folder names, in the paper's order.
CORRUPTIONS: tuple[str, ...] = (
    "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
    "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges",
)
# One recorded seed per corruption, so that adding or reordering corruptions changes no other set.
SEEDS: Mapping[str, int] = MappingProxyType({
    "shot_noise": 190601, "impulse_noise": 190602, "glass_blur": 190603, "motion_blur": 190604,
    "shear": 190605, "scale": 190606, "rotate": 190607, "brightness": 190608, "translate": 190609,
    "stripe": 190610, "fog": 190611, "spatter": 190612, "dotted_line": 190613, "zigzag": 190614,
    "canny_edges": 190615,
})
# These draw nothing at random: their seed is ignored.
DETERMINISTIC = frozenset({"scale", "brightness", "stripe", "canny_edges"})
# Bump when any corruption's code changes: every cache is then stale and rebuilt.
VERSION = 1

SIZE = 28
CENTRE = (SIZE - 1) / 2  # 13.5: MNIST-C's affine transforms keep this point fixed
MANIFEST = "MANIFEST.json"
LABELS_FILE = "labels.npy"


# ---------------------------------------------------------------- helpers shared by corruptions

def _gaussian(x: np.ndarray, sigma: float, axes=(1, 2)) -> np.ndarray:
    """skimage.filters.gaussian's defaults (mode 'nearest', truncate 4) on each image of a batch."""
    sigmas = [sigma if axis in axes else 0.0 for axis in range(x.ndim)]
    return ndi.gaussian_filter(x, sigmas, mode="nearest", truncate=4.0)


def _bilinear_operator(matrix: np.ndarray, offset: np.ndarray) -> sparse.csr_array:
    """skimage.transform.warp(image, inverse_map=AffineTransform) of a 28 x 28 image as a sparse
    (784, 784) matrix acting on the flattened image: bilinear, zero outside the image.

    matrix (2, 2) and offset (2,) map an output pixel's (col, row) to the input point (col, row)
    it samples, as skimage's inverse map does. A neighbour outside the image contributes 0 (as
    skimage's constant mode, cval 0), so edges fade into the background instead of being cut.
    """
    cols, rows = np.meshgrid(np.arange(SIZE, dtype=np.float64), np.arange(SIZE, dtype=np.float64))
    src_c = matrix[0, 0] * cols + matrix[0, 1] * rows + offset[0]
    src_r = matrix[1, 0] * cols + matrix[1, 1] * rows + offset[1]
    r0, c0 = np.floor(src_r), np.floor(src_c)
    fr, fc = src_r - r0, src_c - c0
    targets, sources, weights = [], [], []
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                           (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        r, c = r0 + dr, c0 + dc
        inside = (r >= 0) & (r < SIZE) & (c >= 0) & (c < SIZE) & (weight != 0)
        targets.append(np.flatnonzero(inside))
        sources.append((r[inside] * SIZE + c[inside]).astype(np.intp))
        weights.append(weight[inside])
    shape = (SIZE * SIZE, SIZE * SIZE)
    return sparse.csr_array((np.concatenate(weights), (np.concatenate(targets), np.concatenate(sources))),
                            shape=shape)


def _affine(x: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Warp each image of x (N, 28, 28) by its own affine map, matrix (N, 2, 2) and offset (N, 2)
    (see _bilinear_operator). MNIST-C's maps take a few distinct values (a random sign), so the
    images are grouped by map and each group is one sparse matrix product."""
    n = len(x)
    flat = x.reshape(n, -1)
    out = np.empty_like(flat)
    params = np.concatenate([np.reshape(matrix, (n, 4)), np.reshape(offset, (n, 2))], axis=1)
    distinct, group = np.unique(params, axis=0, return_inverse=True)
    for k, p in enumerate(distinct):
        members = np.flatnonzero(group.ravel() == k)
        out[members] = (_bilinear_operator(p[:4].reshape(2, 2), p[4:]) @ flat[members].T).T
    return out.reshape(x.shape)


def _centred(matrix: np.ndarray) -> np.ndarray:
    """The offset that keeps the image centre (13.5, 13.5) fixed under `matrix` (N, 2, 2)."""
    return CENTRE * (1 - matrix.sum(axis=2))


def _random_signs(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=shape)


def _add_line(canvas: np.ndarray, c0, r0, c1, r1) -> np.ndarray:
    """Add MNIST-C's anti-aliased line from (col c0, row r0) to (c1, r1) to each image of canvas
    (N, 28, 28), in place; returns canvas. Arguments are (N,) arrays.

    Intensity falls with the *vertical* distance d from the line as log(1 - d/2.3) + 1 (about 3
    pixels thick), clipped to [0, 1], and is zero left of floor(c0) and from ceil(c1) on; a vertical
    line (c0 == c1) is not drawn. Only the columns some line reaches are computed (a zigzag's
    segments are 4 columns wide).
    """
    c0, r0, c1, r1 = (np.asarray(a, dtype=np.float64)[:, None, None] for a in (c0, r0, c1, r1))
    lo, hi = max(0, int(np.floor(c0.min()))), min(SIZE, int(np.ceil(c1.max())))
    if hi <= lo:
        return canvas
    cols = np.arange(lo, hi, dtype=np.float64)[None, None, :]
    rows = np.arange(SIZE, dtype=np.float64)[None, :, None]
    vertical = c1 == c0
    slope = (r1 - r0) / np.where(vertical, 1.0, c1 - c0)
    dist = np.minimum(np.abs(rows - (slope * (cols - c0) + r0)), 2.3 - 1e-10)
    line = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    outside = (cols < np.floor(c0)) | (cols >= np.ceil(c1)) | vertical
    canvas[:, :, lo:hi] += np.where(outside, 0.0, line)
    return canvas


# ---------------------------------------------------------------------------------- corruptions
# Each takes images (N, 28, 28) float64 in [0, 1] and a Generator, and returns (N, 28, 28) floats
# (clipped to [0, 1] and rounded to uint8 by `corrupt`).

def _shot_noise(x, rng):
    """Poisson photon noise: severity 5, 3 photons at full intensity, so pixels become 0, 85, 170, 255."""
    photons = 3
    return rng.poisson(x * photons) / photons


def _impulse_noise(x, rng):
    """Salt and pepper (skimage `random_noise(mode='s&p')`): severity 4, 17% of pixels, half of them
    set to 0, half to 255."""
    amount = 0.17
    u = rng.random(x.shape)
    return np.where(u < amount / 2, 0.0, np.where(u < amount, 1.0, x))


def _local_swaps(img: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """MNIST-C glass blur's pixel shuffle, one pass: returns a shuffled copy of img (N, 28, 28).

    MNIST-C visits (row h, col w) for h = 27..2, w = 27..2 (row by row, right to left) and swaps
    pixel (h, w) with (h + dy, w + dx), where dy, dx (N, 26, 26) [h - 2, w - 2] are 0 or -1 (both
    0: no swap). The swaps are sequential: a value swapped left can be swapped again when its new
    position is visited, so it may travel several pixels. That order is kept exactly, a whole row
    at a time: in row h the values carried leftwards form runs (found with a cumulative minimum),
    and the row above receives values only from row h.
    """
    n = len(img)
    moves = np.zeros((2, n, SIZE - 2, SIZE), np.int8)  # rows 2-27, all columns (0, 1 never move)
    moves[0, :, :, 2:], moves[1, :, :, 2:] = dy, dx
    left = (moves[0] == 0) & (moves[1] == -1)
    up = (moves[0] == -1) & (moves[1] == 0)
    up_left = (moves[0] == -1) & (moves[1] == -1)
    # When (h, w) is visited it holds the value that was at (h, k[w]) before row h began: k[w] is
    # the first column j >= w whose right neighbour did not swap left (w itself if w + 1 did not).
    cols = np.arange(SIZE)
    run_ends = np.ones(left.shape, bool)
    run_ends[..., :-1] = ~left[..., 1:]
    source = np.minimum.accumulate(np.where(run_ends, cols, SIZE)[..., ::-1], axis=-1)[..., ::-1]
    # What a column receives from the column to its right: (h, w + 1) swapping up-left puts its
    # value on (h - 1, w).
    up_left_from_right = np.zeros_like(up_left)
    up_left_from_right[..., :-1] = up_left[..., 1:]

    out = img.copy()
    for h in range(SIZE - 1, 1, -1):
        i = h - 2
        row, above = out[:, h].copy(), out[:, h - 1].copy()  # as they stand when row h begins
        value = np.take_along_axis(row, source[:, i], axis=1)  # at (h, w) when w is visited
        from_right = np.zeros_like(value)
        from_right[:, :-1] = value[:, 1:]
        # The row above at column w, when (h, w) is visited.
        above_now = np.where(up_left_from_right[:, i], from_right, above)
        row_left, above_left = np.zeros_like(row), np.zeros_like(above)
        row_left[:, 1:], above_left[:, 1:] = row[:, :-1], above[:, :-1]  # untouched until w swaps
        new_row = np.where(left[:, i], row_left, value)
        new_row = np.where(up[:, i], above_now, new_row)
        out[:, h] = np.where(up_left[:, i], above_left, new_row)
        out[:, h - 1] = np.where(up[:, i], value, above_now)
    return out


def _glass_blur(x, rng):
    """Blur, shuffle pixels locally, blur again: severity 1 (sigma 0.7, max shift 1, 2 passes).

    Two MNIST-C quirks kept on purpose, since they made the published set:
    - its `gaussian(..., multichannel=True)` on a 2-D image took the columns for colour channels,
      so both blurs run down the columns only (vertical blur);
    - `randint(-1, 1)` excludes 1, so a pixel swaps only with a neighbour above and/or to its left.
    """
    sigma, passes = 0.7, 2
    # MNIST-C rounds down to uint8 between the first blur and the shuffle.
    img = (_gaussian(x, sigma, axes=(1,)) * 255).astype(np.uint8)
    for _ in range(passes):
        # Per pixel, MNIST-C flips a fair coin, then draws dy and dx, each 0 or -1 with
        # probability 1/2: three fair bits of one draw.
        bits = rng.integers(0, 8, size=(len(x), SIZE - 2, SIZE - 2), dtype=np.uint8)
        swap = (bits & 1).astype(bool)
        dy = np.where(swap, -((bits >> 1) & 1).astype(np.int8), 0)
        dx = np.where(swap, -((bits >> 2) & 1).astype(np.int8), 0)
        img = _local_swaps(img, dy, dx)
    return _gaussian(img / 255.0, sigma, axes=(1,))


def _motion_kernel(radius: float = 10, sigma: float = 3) -> np.ndarray:
    """ImageMagick's MotionBlurImage kernel: a one-sided Gaussian over 2*ceil(radius) + 1 taps."""
    taps = np.arange(2 * int(np.ceil(radius)) + 1)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _motion_blur_at(x: np.ndarray, angles_deg: np.ndarray, chunk: int = 256) -> np.ndarray:
    """ImageMagick's `motion_blur(radius=10, sigma=3, angle)` of each image at its own angle.

    Pixel (row, col) becomes sum_j kernel[j] * x[row + round(j sin a), col + round(j cos a)]
    (ImageMagick rounds halves down; past the border the edge pixel repeats, its default virtual
    pixels), so each stroke trails towards angle + 180 degrees. The images are sorted by angle,
    so that each tap's shift is constant over runs of images and is applied as a slice.
    """
    kernel = _motion_kernel()
    reach = len(kernel) - 1
    order = np.argsort(angles_deg, kind="stable")
    theta = np.deg2rad(np.asarray(angles_deg)[order])[:, None]
    taps = np.arange(len(kernel))[None, :]
    shift_c = np.ceil(taps * np.cos(theta) - 0.5).astype(int)  # (N, taps)
    shift_r = np.ceil(taps * np.sin(theta) - 0.5).astype(int)
    edge = np.clip(np.arange(-reach, SIZE + reach), 0, SIZE - 1)  # index of the pixel repeated
    out = np.empty(x.shape, dtype=np.float64)
    for start in range(0, len(x), chunk):
        stop = min(start + chunk, len(x))
        padded = x[order[start:stop]][:, edge][:, :, edge]
        blurred = np.zeros((stop - start, SIZE, SIZE))
        for j, weight in enumerate(kernel):
            code = shift_r[start:stop, j] * (4 * reach) + shift_c[start:stop, j]
            runs = np.concatenate(([0], np.flatnonzero(np.diff(code)) + 1, [stop - start]))
            for a, b in zip(runs[:-1], runs[1:]):
                r, c = reach + shift_r[start + a, j], reach + shift_c[start + a, j]
                blurred[a:b] += weight * padded[a:b, r:r + SIZE, c:c + SIZE]
        out[order[start:stop]] = blurred
    return out


def _motion_blur(x, rng):
    """Motion blur along a random direction: severity 1 (radius 10, sigma 3), angle uniform in
    [-45, 45) degrees per image. MNIST-C calls ImageMagick through Wand; this is the same kernel."""
    return _motion_blur_at(x, rng.uniform(-45, 45, size=len(x)))


def _shear(x, rng):
    """Shear about the centre: severity 2, shear angle 0.4 rad, its sign random per image.

    skimage's AffineTransform(shear=s) of MNIST-C's time (before 0.19 changed its meaning) mapped
    (col, row) by [[1, -sin s], [0, cos s]]: the rows slant and shrink by cos s.
    """
    s = 0.4 * _random_signs(rng, len(x))
    matrix = np.zeros((len(x), 2, 2))
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 1] = 1.0, -np.sin(s), np.cos(s)
    return _affine(x, matrix, _centred(matrix))


def _scale(x, rng):
    """Zoom out about the centre: severity 3, the digit shrinks to 70% (inverse map scales by 1/0.7)."""
    matrix = np.broadcast_to(np.eye(2) / 0.7, (len(x), 2, 2))
    return _affine(x, matrix, _centred(matrix))


def _rotate(x, rng):
    """Rotate about the centre: severity 2, 0.4 rad (23 degrees), its direction random per image."""
    a = 0.4 * _random_signs(rng, len(x))
    matrix = np.stack([np.stack([np.cos(a), -np.sin(a)], 1), np.stack([np.sin(a), np.cos(a)], 1)], 1)
    return _affine(x, matrix, _centred(matrix))


def _translate(x, rng):
    """Shift by 3 pixels along each axis (severity 3), each direction random per image."""
    matrix = np.broadcast_to(np.eye(2), (len(x), 2, 2))
    return _affine(x, matrix, 3.0 * _random_signs(rng, (len(x), 2)))


def _brightness(x, rng):
    """+0.5 on the HSV value (severity 5). A grey image has saturation 0, so MNIST-C's
    gray -> RGB -> HSV -> RGB -> gray round trip is exactly this."""
    return x + 0.5


def _stripe(x, rng):
    """Invert the 7 leftmost and 7 rightmost columns."""
    out = x.copy()
    out[:, :, :7] = 1 - x[:, :, :7]
    out[:, :, SIZE - 7:] = 1 - x[:, :, SIZE - 7:]
    return out


def _mean_plus_noise(total: np.ndarray, rng: np.random.Generator, a: float) -> np.ndarray:
    """total / 4 + uniform noise in [-a, a), in place (float32)."""
    noise = rng.random(total.shape, dtype=np.float32)
    noise *= 2 * a
    total *= 0.25
    total += noise
    total -= a
    return total


def _plasma_corners(rng: np.random.Generator, n: int, size: int = 256, decay: float = 1.4,
                    crop: int = SIZE) -> np.ndarray:
    """The top-left crop x crop of n diamond-square plasma fractals of size x size, each scaled to
    [0, 1] by its whole map's minimum and maximum, as MNIST-C's `plasma_fractal` (ImageNet-C's).

    Each level adds uniform noise in +-wibble**2 (wibble 100, divided by `decay` per level) to
    the mean of a point's 4 neighbours, wrapping around the map's edges. The finest level, 3/4 of
    the points, is never assembled into a map: only its minimum, maximum and crop are kept.
    Returns (n, crop, crop) float32.
    """
    grid = np.zeros((n, 1, 1), np.float32)  # the points so far: every (size / k)-th pixel
    wibble = 100.0
    levels = int(np.log2(size))
    for level in range(levels):
        a = wibble * wibble
        pairs_right = grid + np.roll(grid, -1, axis=2)  # corner (i, j) + corner (i, j + 1)
        pairs_down = grid + np.roll(grid, -1, axis=1)   # corner (i, j) + corner (i + 1, j)
        centres = _mean_plus_noise(pairs_right + np.roll(pairs_right, -1, axis=1), rng, a)
        # Midpoints of the top edges: 2 corners, the centre below and the centre above; and of
        # the left edges: 2 corners, the centre to the right and the one to the left.
        tops = _mean_plus_noise(pairs_right + centres + np.roll(centres, 1, axis=1), rng, a)
        lefts = _mean_plus_noise(pairs_down + centres + np.roll(centres, 1, axis=2), rng, a)
        if level < levels - 1:
            k = grid.shape[1]
            grid, coarse = np.empty((n, 2 * k, 2 * k), np.float32), grid
            grid[:, 0::2, 0::2], grid[:, 1::2, 1::2] = coarse, centres
            grid[:, 0::2, 1::2], grid[:, 1::2, 0::2] = tops, lefts
            wibble /= decay
    parts = [p.reshape(n, -1) for p in (grid, centres, tops, lefts)]
    low = np.min([p.min(axis=1) for p in parts], axis=0)[:, None, None]
    high = np.max([p.max(axis=1) for p in parts], axis=0)[:, None, None]
    h = crop // 2
    out = np.empty((n, crop, crop), np.float32)
    out[:, 0::2, 0::2], out[:, 1::2, 1::2] = grid[:, :h, :h], centres[:, :h, :h]
    out[:, 0::2, 1::2], out[:, 1::2, 0::2] = tops[:, :h, :h], lefts[:, :h, :h]
    return (out - low) / (high - low)


def _fog(x, rng, chunk: int = 16):
    """Add a plasma-fractal haze, then rescale: severity 5 (haze strength 3.0, wibble decay 1.4).

    x + 3 * plasma, times max(x) / (max(x) + 3), max per image. The 256 x 256 fractals are made
    in chunks of `chunk` images, which keeps the working set in a core's L2 cache (1 MB: about
    2x faster than large chunks).
    """
    strength, decay = 3.0, 1.4
    haze = np.concatenate([_plasma_corners(rng, len(x[i:i + chunk]), decay=decay)
                           for i in range(0, len(x), chunk)])
    peak = x.max(axis=(1, 2), keepdims=True)
    return (x + strength * haze) * peak / (peak + strength)


def _spatter(x, rng):
    """Mud splashes: severity 4 (liquid mean 0.65, sd 0.3, blur 1, threshold 0.65, mud blur 1.5).

    Gaussian noise blurred and thresholded gives blobs; their mask is blurred, kept where >= 0.8,
    and mixes the image with mud of grey 63.
    """
    liquid = _gaussian(rng.normal(0.65, 0.3, size=x.shape), 1.0)
    mud = _gaussian((liquid > 0.65).astype(np.float64), 1.5)
    mud[mud < 0.8] = 0
    return x * (1 - mud) + 63 / 255 * mud


def _dotted_lines(r0: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """MNIST-C's dotted line from (col 0, row r0) to (col 27, row r1), one per image: drawn only on
    columns 2-3, 6-7, ..., 26 (pairs of columns on, pairs off). (N, 28, 28) in [0, 1]."""
    line = _add_line(np.zeros((len(r0), SIZE, SIZE)), np.zeros(len(r0)), r0, np.full(len(r0), SIZE - 1.0), r1)
    line[:, :, (np.arange(SIZE) // 2) % 2 == 0] = 0
    return line


def _dotted_line(x, rng):
    """A dotted line across the image between random rows r0, r1 (each 0-26), added to it."""
    r0, r1 = rng.integers(0, 27, size=(2, len(x)))
    return x + _dotted_lines(r0, r1)


def _zigzags(r0: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """MNIST-C's zigzag from (col 2, row r0) to (col 25, row r1), one per image: teeth 2 pixels
    high and 4 apart along the line, each segment drawn by _add_line. (N, 28, 28), >= 0."""
    tooth, c0, c1 = 2.0, 2.0, 25.0
    r0 = np.asarray(r0, dtype=np.float64)
    n = len(r0)
    theta = np.arctan((r1 - r0) / (c1 - c0))
    length = (c1 - c0) / np.cos(theta)
    # Vertices along the unrotated line: the start, one per tooth alternating +-tooth, and the
    # line's end at MNIST-C's own odd height. |r1 - r0| <= 5 keeps 23 <= length < 23.6, so every
    # zigzag has the same number of teeth (6) and ends past the last one.
    teeth = int((length.max() - tooth) // (2 * tooth)) + 1
    along = [np.zeros(n)] + [np.full(n, (2 * i + 1) * tooth) for i in range(teeth)] + [length]
    across = [np.zeros(n)] + [np.full(n, (-1) ** i * tooth) for i in range(teeth)]
    covered = 2 * tooth * (length // (2 * tooth))
    across.append(across[-1] / (2 * (length - covered)))
    cos, sin = np.cos(theta), np.sin(theta)
    cs = [c0 + a * cos - b * sin for a, b in zip(along, across)]
    rs = [r0 + a * sin + b * cos for a, b in zip(along, across)]
    # MNIST-C adds and clips segment by segment; the segments are >= 0, so clipping the sum once
    # (in `corrupt`) gives the same image.
    canvas = np.zeros((n, SIZE, SIZE))
    for i in range(1, len(cs)):
        _add_line(canvas, cs[i - 1], rs[i - 1], cs[i], rs[i])
    return canvas


def _zigzag(x, rng):
    """A zigzag starting at a random row r0 (0-26) and ending at r0 + (-5..4), added to the image."""
    r0 = rng.integers(0, 27, size=len(x))
    return x + _zigzags(r0, r0 + rng.integers(-5, 5, size=len(x)))


def _canny_edges(x, rng, chunk: int = 500):
    """skimage.feature.canny(image) with its defaults (sigma 1, hysteresis thresholds 0.1 and 0.2
    of the gradient magnitude), `chunk` images at a time: edges are 1, the rest 0.

    Chunks keep the temporaries small (a whole test set's are several 100 MB, and allocating them
    afresh made the corruption 3x slower)."""
    return np.concatenate([_canny_batch(x[i:i + chunk]) for i in range(0, len(x), chunk)])


def _canny_batch(x):
    # Smoothing as skimage's canny does it: zeros outside the image, then divide by the smoothed
    # all-ones image so that pixels near the border are not darkened.
    smoothed = ndi.gaussian_filter(x, (0, 1, 1), mode="constant", cval=0.0, truncate=4.0)
    smoothed /= ndi.gaussian_filter(np.ones((SIZE, SIZE)), 1, mode="constant", truncate=4.0) + np.finfo(float).eps
    # ndi.sobel smooths across every other axis, the batch axis too: apply its two 1-D passes.
    isobel = ndi.correlate1d(ndi.correlate1d(smoothed, [-1, 0, 1], axis=1), [1, 2, 1], axis=2)
    jsobel = ndi.correlate1d(ndi.correlate1d(smoothed, [-1, 0, 1], axis=2), [1, 2, 1], axis=1)
    magnitude = np.sqrt(isobel * isobel + jsobel * jsobel)

    # Non-maximum suppression, only where the magnitude reaches the low threshold (on MNIST about
    # 1 pixel in 7) and off the border (never an edge): compare each pixel with the magnitude
    # interpolated between two neighbours, on both sides along the gradient. Which two depends on
    # the gradient's octant; where octants tie, skimage's later octant decides (hence the order).
    candidate = magnitude >= 0.1
    candidate[:, [0, -1], :] = candidate[:, :, [0, -1]] = False
    at = np.flatnonzero(candidate)  # flat indices into the (N, 28, 28) arrays
    i, j = isobel.ravel()[at], jsobel.ravel()[at]
    ai, aj = np.abs(i), np.abs(j)
    opposite, steep = i * j <= 0, ai >= aj
    octant = np.where(opposite, np.where(steep, 3, 2), np.where(ai <= aj, 1, 0))
    steep_octant = (octant == 0) | (octant == 3)
    # Never 0/0: a magnitude >= 0.1 makes the larger of ai, aj positive.
    weight = np.where(steep_octant, aj, ai) / np.where(steep_octant, ai, aj)
    neighbours = np.array([  # per octant, (row, col) offsets of: plus c1, plus c2, minus c1, minus c2
        [(1, 0), (1, 1), (-1, 0), (-1, -1)],
        [(0, 1), (1, 1), (0, -1), (-1, -1)],
        [(0, 1), (-1, 1), (0, -1), (1, -1)],
        [(-1, 0), (-1, 1), (1, 0), (1, -1)],
    ]) @ np.array([SIZE, 1])  # as flat offsets
    flat = magnitude.ravel()
    near = flat[at[:, None] + neighbours[octant]]
    m = flat[at]
    is_max = ((near[:, 1] * weight + near[:, 0] * (1 - weight) <= m)
              & (near[:, 3] * weight + near[:, 2] * (1 - weight) <= m))
    low = np.zeros(x.shape, bool)
    low.ravel()[at[is_max]] = True
    high = low & (magnitude >= 0.2)
    # Hysteresis: keep the 8-connected groups of low pixels that hold a high pixel, per image.
    within_image = np.zeros((3, 3, 3), bool)
    within_image[1] = True
    labels, count = ndi.label(low, within_image)
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[high])] = True
    keep[0] = False
    return keep[labels].astype(np.float64)


_CORRUPTION_FUNCTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "shot_noise": _shot_noise, "impulse_noise": _impulse_noise, "glass_blur": _glass_blur,
    "motion_blur": _motion_blur, "shear": _shear, "scale": _scale, "rotate": _rotate,
    "brightness": _brightness, "translate": _translate, "stripe": _stripe, "fog": _fog,
    "spatter": _spatter, "dotted_line": _dotted_line, "zigzag": _zigzag, "canny_edges": _canny_edges,
}
assert tuple(_CORRUPTION_FUNCTIONS) == CORRUPTIONS == tuple(SEEDS)


# ------------------------------------------------------------------------------------ public API

def corrupt(name: str, images: np.ndarray, seed: int | None = None) -> np.ndarray:
    """Apply one corruption to every image.

    images: (N, 28, 28) uint8 in [0, 255]. seed: None uses SEEDS[name]; the same seed gives the
    same output (the corruptions in DETERMINISTIC ignore it). Random parameters (angles, signs,
    line positions, noise) are drawn per image. Returns (N, 28, 28) uint8: the corrupted values
    clipped to [0, 255] and rounded to the nearest integer. Raises ValueError for an unknown name
    (listing the known ones) or images of another shape or dtype.
    """
    if name not in _CORRUPTION_FUNCTIONS:
        raise ValueError(f"No corruption named {name!r} found; known corruptions: {', '.join(CORRUPTIONS)}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise ValueError(f"images must be (N, {SIZE}, {SIZE}) uint8, got {images.shape} {images.dtype}")
    if len(images) == 0:
        return images.copy()
    rng = np.random.default_rng(SEEDS[name] if seed is None else seed)
    out = _CORRUPTION_FUNCTIONS[name](images / 255.0, rng)
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def regenerate(x_test: np.ndarray) -> dict[str, np.ndarray]:
    """Every corruption of x_test ((N, 28, 28) uint8) at its recorded seed: {name: (N, 28, 28) uint8},
    in CORRUPTIONS order."""
    return {name: corrupt(name, x_test) for name in CORRUPTIONS}


@dataclasses.dataclass(frozen=True)
class CorruptedSet:
    """The corrupted test sets: images[name] (N, 28, 28) uint8 for each name in CORRUPTIONS, the
    labels (N,) shared by all, each file's SHA-256 (file name -> hex digest), and the cache folder."""

    images: dict[str, np.ndarray]
    labels: np.ndarray
    sha256: dict[str, str]
    folder: Path


def cache_dir_for(data_dir: Path, dataset: str = "mnist") -> Path:
    """`<data_dir>/<dataset folder>-c-regenerated`, e.g. data/mnist-c-regenerated.
    Raises ValueError for an unknown dataset."""
    from mnistlab.data import dataset_info  # numpy-only module; imported here to keep this one light

    return Path(data_dir) / f"{dataset_info(dataset).folder}-c-regenerated"


def _array_digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


def _expected_manifest(x_test: np.ndarray, y_test: np.ndarray, source_sha256: str) -> dict:
    return {
        "label": LABEL,
        "version": VERSION,
        "source_sha256": source_sha256,
        "x_test_sha256": _array_digest(x_test),
        "y_test_sha256": _array_digest(y_test),
        "seeds": dict(SEEDS),
        "corruptions": list(CORRUPTIONS),
    }


def _npy_bytes(a: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, a, allow_pickle=False)
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    # A temporary name, then os.replace: a kill leaves either the old file or the whole new one,
    # never half a file under the real name. No fsync: a file lost to a power cut fails its
    # SHA-256 check at the next load and is rebuilt.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _difference(key: str, cached, wanted) -> str:
    """What differs between a manifest's value and the wanted one, in a few words."""
    if isinstance(cached, dict) and isinstance(wanted, dict):
        keys = sorted(k for k in cached.keys() | wanted.keys() if cached.get(k) != wanted.get(k))
        return f"{key} differ ({', '.join(f'{k}: {cached.get(k)} cached, {wanted.get(k)} now' for k in keys[:3])})"
    short = [v[:12] + "..." if isinstance(v, str) and len(v) > 16 else v for v in (cached, wanted)]
    return f"{key} is {short[0]!r} in {MANIFEST}, {short[1]!r} now"


def _read_cache(folder: Path, expected: dict) -> tuple[CorruptedSet | None, str]:
    """The cached set if it is complete and matches `expected`, else (None, what is wrong)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None, f"no {MANIFEST} (not built yet, or a build was interrupted)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as e:
        return None, f"{MANIFEST} is unreadable ({e})"
    for key, value in expected.items():
        if manifest.get(key) != value:
            return None, f"stale: {_difference(key, manifest.get(key), value)}"
    wanted = [f"{name}.npy" for name in CORRUPTIONS] + [LABELS_FILE]
    if sorted(files) != sorted(wanted):
        return None, f"stale: {MANIFEST} lists other files ({', '.join(sorted(files))})"
    arrays = {}
    for file in wanted:
        path = folder / file
        if not path.is_file():
            return None, f"partial: {file} is missing"
        raw = path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != files[file]:
            return None, f"tampered: {file} has SHA-256 {digest[:12]}..., {MANIFEST} says {files[file][:12]}..."
        arrays[file] = np.load(io.BytesIO(raw), allow_pickle=False)
    images = {name: arrays[f"{name}.npy"] for name in CORRUPTIONS}
    return CorruptedSet(images, arrays[LABELS_FILE], files, folder), ""


def load_corrupted(x_test: np.ndarray, y_test: np.ndarray, source_sha256: str, cache_dir: Path,
                   log: Callable[[str], object] = print) -> CorruptedSet:
    """The corrupted test sets of (x_test, y_test), from the cache at cache_dir, built if needed.

    x_test (N, 28, 28) uint8; y_test (N,) integer labels; source_sha256: SHA-256 of the test-images
    file they came from (MnistData.digests["t10k-images-idx3-ubyte"]). The cache holds
    `<name>.npy` (N, 28, 28) uint8 per corruption, `labels.npy` and MANIFEST.json (VERSION, the
    source digest, digests of x_test and y_test, the seeds, each file's SHA-256). A missing,
    partial, stale (other VERSION, source, test arrays or seeds) or tampered (a file's SHA-256
    differs) cache is logged in one line saying what was wrong, then rebuilt; a valid one is loaded
    silently. Files are written under temporary names and renamed, MANIFEST.json last, so an
    interrupted build is detected next time; a lock file (`.lock`) lets one process build at a time.
    """
    cache_dir = Path(cache_dir)
    expected = _expected_manifest(x_test, y_test, source_sha256)
    cached, problem = _read_cache(cache_dir, expected)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "a") as lock:
        # One builder at a time (e.g. parallel workers on a fresh clone); whoever waited finds
        # the cache built and loads it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached, problem = _read_cache(cache_dir, expected)
        if cached is not None:
            return cached
        log(f"{LABEL} test sets at {cache_dir}: {problem}; regenerating the {len(CORRUPTIONS)} "
            f"corruptions of {len(x_test)} images")
        return _build_cache(cache_dir, expected, x_test, y_test)


def _build_cache(cache_dir: Path, expected: dict, x_test: np.ndarray, y_test: np.ndarray) -> CorruptedSet:
    # Without its manifest the old cache no longer looks valid while its files are replaced.
    (cache_dir / MANIFEST).unlink(missing_ok=True)
    for leftover in cache_dir.glob(".*.tmp-*"):  # from a build killed before its rename
        leftover.unlink(missing_ok=True)
    images = regenerate(x_test)
    labels = np.asarray(y_test)
    files = {}
    for file, array in [(f"{name}.npy", images[name]) for name in CORRUPTIONS] + [(LABELS_FILE, labels)]:
        data = _npy_bytes(array)
        files[file] = hashlib.sha256(data).hexdigest()
        _write_atomically(cache_dir / file, data)
    manifest = {**expected, "files": files,
                "reference": "Mu & Gilmer 2019, arXiv:1906.02337; github.com/google-research/mnist-c"}
    _write_atomically(cache_dir / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return CorruptedSet(images, labels, files, cache_dir)


def plot_corruptions(x_clean: np.ndarray, corrupted: dict[str, np.ndarray], index: int = 0) -> plt.Figure:
    """One digit, clean then under every corruption (each panel titled with its name), drawn as
    MNIST-C's figure draws them (white on black, 0-255). x_clean (N, 28, 28) uint8;
    corrupted {name: (N, 28, 28) uint8}; index: which image. The title names LABEL."""
    panels = [("clean", x_clean[index])] + [(name, images[index]) for name, images in corrupted.items()]
    columns = 8
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.remove()
    for ax, (name, image) in zip(axes.ravel(), panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])  # a frame but no ticks: white stripes stay visible against the page
        ax.set_yticks([])
    fig.suptitle(f"{LABEL}: test image {index}")
    fig.tight_layout()
    return fig
