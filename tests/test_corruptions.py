"""mnistlab.corruptions: each corruption's contract on 40 synthetic digits, the vectorised
algorithms against their references (skimage's canny and warp, MNIST-C's sequential glass-blur
swaps, ImageMagick's motion-blur kernel), the cache (built once, then loaded; partial, tampered,
stale and interrupted caches rebuilt with a message), and the figure."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import feature, transform

from mnistlab import corruptions
from mnistlab.corruptions import (CORRUPTIONS, DETERMINISTIC, LABEL, SEEDS, cache_dir_for, corrupt,
                                  load_corrupted, plot_corruptions, regenerate)

N = 40
SOURCE_SHA256 = "0" * 64  # stands for the digest of the test-images file


def synthetic_digits(n: int = N, seed: int = 0) -> np.ndarray:
    """n MNIST-like (28, 28) uint8 images: a bright ring and a slanted bar, each at its own place
    and size, anti-aliased, on black with a black margin of about 4 pixels."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:28, 0:28].astype(float)
    cy, cx = rng.uniform(11, 16, (2, n, 1, 1))
    ry, rx = rng.uniform(3.5, 6.5, (2, n, 1, 1))
    ring = np.abs(np.hypot((rows - cy) / ry, (cols - cx) / rx) - 1) * np.minimum(ry, rx)
    slope, start = rng.uniform(-0.6, 0.6, (n, 1, 1)), rng.uniform(8, 18, (n, 1, 1))
    bar = np.where((rows > 6) & (rows < 22), np.abs(cols - (start + slope * (rows - 14))), 99)
    ink = np.clip(1.6 - np.minimum(ring, bar), 0, 1)
    return np.rint(ink * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return synthetic_digits()


@pytest.fixture
def labels() -> np.ndarray:
    return (np.arange(N) % 10).astype(np.uint8)


# ------------------------------------------------------------------------- every corruption

@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_contract(name, digits):
    out = corrupt(name, digits)
    assert out.shape == digits.shape and out.dtype == np.uint8
    assert 0 <= out.min() and out.max() <= 255
    changed = (out != digits).reshape(N, -1).any(axis=1)
    assert changed.all(), f"{name} left {np.flatnonzero(~changed)} unchanged"
    assert np.array_equal(digits, synthetic_digits()), "the input was modified in place"


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_is_deterministic_for_a_seed(name, digits):
    assert np.array_equal(corrupt(name, digits, seed=1), corrupt(name, digits, seed=1))
    assert np.array_equal(corrupt(name, digits), corrupt(name, digits, seed=SEEDS[name]))
    other_seed_same = np.array_equal(corrupt(name, digits, seed=1), corrupt(name, digits, seed=2))
    assert other_seed_same == (name in DETERMINISTIC)


def test_names_order_and_seeds():
    assert CORRUPTIONS == ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale",
                           "rotate", "brightness", "translate", "stripe", "fog", "spatter", "dotted_line",
                           "zigzag", "canny_edges")
    assert set(SEEDS) == set(CORRUPTIONS) and len(set(SEEDS.values())) == len(CORRUPTIONS)
    assert DETERMINISTIC < set(CORRUPTIONS)


def test_unknown_name_and_bad_images_are_rejected(digits):
    with pytest.raises(ValueError, match="No corruption named 'snow'.*shot_noise.*canny_edges"):
        corrupt("snow", digits)
    with pytest.raises(ValueError, match=r"\(N, 28, 28\) uint8"):
        corrupt("fog", digits.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(N, 28, 28\) uint8"):
        corrupt("fog", digits[:, :27])


# ------------------------------------------------------------------- against their references

def test_pointwise_corruptions_follow_mnist_c(digits):
    x = digits.astype(int)
    assert set(np.unique(corrupt("shot_noise", digits))) <= {0, 85, 170, 255}  # 3 photons
    assert np.array_equal(corrupt("brightness", digits), _to_uint8(digits / 255 + 0.5))  # HSV value + 0.5
    stripe = corrupt("stripe", digits).astype(int)
    assert np.array_equal(stripe[:, :, 7:21], x[:, :, 7:21])
    assert np.array_equal(stripe[:, :, :7], 255 - x[:, :, :7])
    assert np.array_equal(stripe[:, :, 21:], 255 - x[:, :, 21:])
    grey = np.full((200, 28, 28), 128, np.uint8)
    impulse = corrupt("impulse_noise", grey)
    assert set(np.unique(impulse)) == {0, 128, 255}
    assert np.mean(impulse == 0) == pytest.approx(0.085, abs=0.005)
    assert np.mean(impulse == 255) == pytest.approx(0.085, abs=0.005)


def test_lines_are_added_where_mnist_c_draws_them(digits):
    dotted = corrupt("dotted_line", digits)
    off = (np.arange(28) // 2) % 2 == 0  # columns 0-1, 4-5, ...; and the last column
    off[27] = True
    assert np.array_equal(dotted[:, :, off], digits[:, :, off])
    assert (dotted >= digits).all() and (dotted[:, :, ~off] > digits[:, :, ~off]).any(axis=(1, 2)).all()
    zigzag = corrupt("zigzag", digits)
    assert (zigzag >= digits).all()
    assert np.array_equal(zigzag[:, :, :2], digits[:, :, :2]) and np.array_equal(zigzag[:, :, 26:], digits[:, :, 26:])


def _mnist_c_line(c0, r0, c1, r1):
    """MNIST-C's line_from_points for one line: intensity log(1 - d/2.3) + 1 at vertical distance d
    from the line, zero left of floor(c0) and from ceil(c1) on, nothing for a vertical line."""
    if c1 == c0:
        return np.zeros((28, 28))
    rows, cols = np.mgrid[0:28, 0:28].astype(float)
    dist = np.clip(np.abs(rows - ((r1 - r0) / (c1 - c0) * (cols - c0) + r0)), 0, 2.3 - 1e-10)
    line = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    line[:, :int(np.floor(c0))] = 0
    line[:, int(np.ceil(c1)):] = 0
    return line


def _mnist_c_zigzag(r0, r1):
    """MNIST-C's zigzag for one image, vertex by vertex, drawn and clipped segment by segment."""
    a = b = 2.0
    theta = np.arctan((r1 - r0) / 23)
    d = 23 / np.cos(theta)
    vertices = [(0.0, 0.0)]
    for i in range(int((d - a) // (2 * a)) + 1):
        vertices.append(((2 * i + 1) * a, (-1) ** i * b))
    covered = 2 * a * (d // (2 * a))
    if d != covered:
        vertices.append((d, vertices[-1][1] / (2 * (d - covered))))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cs, rs = rotation @ np.array(vertices).T + np.array([[2.0], [r0]])
    image = np.zeros((28, 28))
    for i in range(1, len(cs)):
        image = np.clip(image + _mnist_c_line(cs[i - 1], rs[i - 1], cs[i], rs[i]), 0, 1)
    return image


def test_dotted_lines_and_zigzags_equal_mnist_c_drawing():
    r0 = np.array([0, 26, 13, 5, 20, 9, 0, 26, 17, 3])
    r1 = np.array([26, 0, 13, 9, 15, 9, 0, 26, 2, 24])
    dots = corruptions._dotted_lines(r0, r1)
    for k in range(len(r0)):
        expected = _mnist_c_line(0, r0[k], 27, r1[k])
        expected[:, [c for c in range(28) if (c // 2) % 2 == 0]] = 0
        np.testing.assert_allclose(dots[k], expected, atol=1e-12)
    r0 = np.array([0, 26, 13, 7, 20, 3, 11, 26, 0, 5])
    r1 = r0 + np.array([-5, 4, 0, 1, -3, 4, -1, -5, 2, -2])  # both extremes of MNIST-C's draw
    zigzags = np.clip(corruptions._zigzags(r0, r1), 0, 1)
    for k in range(len(r0)):
        np.testing.assert_allclose(zigzags[k], _mnist_c_zigzag(r0[k], r1[k]), atol=1e-12)


def test_canny_edges_equal_skimage_canny(digits):
    rng = np.random.default_rng(4)
    # Faint digits and smooth random fields put many gradients between the two hysteresis
    # thresholds and edges on the border, where the smoothing's border correction matters.
    faint = np.rint(ndi.gaussian_filter(digits * 0.3, (0, 1, 1))).astype(np.uint8)
    field = ndi.gaussian_filter(rng.random((N, 28, 28)), (0, 1.5, 1.5))
    field = np.rint(255 * (field - field.min()) / np.ptp(field)).astype(np.uint8)
    for images in (digits, corrupt("shot_noise", digits), faint, field):
        expected = np.stack([feature.canny(im / 255.0) for im in images])
        assert np.array_equal(corrupt("canny_edges", images), expected.astype(np.uint8) * 255)
        assert np.array_equal(corruptions._canny_edges(images / 255.0, None, chunk=7), expected)


def _skimage_warp(image, **params):
    """MNIST-C's warp: skimage's inverse map, translated to keep the centre (13.5, 13.5) fixed."""
    matrix = transform.AffineTransform(**params).params
    matrix[:2, 2] = 13.5 * (1 - matrix[:2, :2].sum(axis=1))
    return transform.warp(image / 255.0, inverse_map=transform.ProjectiveTransform(matrix=matrix))


def _to_uint8(x):
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)


def test_affine_corruptions_equal_skimage_warp(digits):
    def both(name, candidates):
        out = corrupt(name, digits).astype(int)
        # Within one grey level: a sum in another order can round a value of x.5 the other way.
        matches = np.array([[np.abs(o - _to_uint8(c(im))).max() <= 1 for c in candidates]
                            for o, im in zip(out, digits)])
        assert matches.any(axis=1).all(), f"{name}: images {np.flatnonzero(~matches.any(axis=1))} match no candidate"
        return matches

    assert both("scale", [lambda im: _skimage_warp(im, scale=(1 / 0.7, 1 / 0.7))]).all()
    rotations = both("rotate", [lambda im, a=a: _skimage_warp(im, rotation=a) for a in (0.4, -0.4)])
    assert rotations[:, 0].any() and rotations[:, 1].any()  # the direction is drawn per image

    def old_shear(s):  # skimage's AffineTransform(shear=s) before 0.19: [[1, -sin s], [0, cos s]]
        matrix = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
        matrix[:2, 2] = 13.5 * (1 - matrix[:2, :2].sum(axis=1))
        return lambda im: transform.warp(im / 255.0, inverse_map=transform.ProjectiveTransform(matrix=matrix))

    shears = both("shear", [old_shear(0.4), old_shear(-0.4)])
    assert shears[:, 0].any() and shears[:, 1].any()
    moves = [(dx, dy) for dx in (3, -3) for dy in (3, -3)]
    shifts = both("translate", [lambda im, t=t: transform.warp(im / 255.0, transform.AffineTransform(translation=t))
                                for t in moves])
    assert shifts.any(axis=0).sum() >= 3


def _sequential_swaps(img, dy, dx):
    """MNIST-C's glass-blur shuffle as it is written: one swap at a time, rows 27..2, columns 27..2."""
    img = img.copy()
    for n in range(len(img)):
        for h in range(27, 1, -1):
            for w in range(27, 1, -1):
                h2, w2 = h + dy[n, h - 2, w - 2], w + dx[n, h - 2, w - 2]
                img[n, h, w], img[n, h2, w2] = img[n, h2, w2], img[n, h, w]
    return img


def test_glass_blur_swaps_equal_mnist_c_sequential_swaps(digits):
    rng = np.random.default_rng(3)
    for images in (digits, rng.integers(0, 256, digits.shape, dtype=np.uint8)):
        swap = rng.random((N, 26, 26)) < rng.uniform(0.3, 1.0)  # long chains of swaps too
        dy, dx = rng.integers(-1, 1, size=(2, N, 26, 26))
        dy, dx = np.where(swap, dy, 0), np.where(swap, dx, 0)
        assert np.array_equal(corruptions._local_swaps(images, dy, dx), _sequential_swaps(images, dy, dx))


def test_motion_blur_is_imagemagicks_one_sided_kernel(digits):
    dot = np.zeros((3, 28, 28))
    dot[:, 14, 14] = 1.0
    kernel = corruptions._motion_kernel()
    assert len(kernel) == 21 and kernel.sum() == pytest.approx(1) and np.all(np.diff(kernel) < 0)
    assert kernel[1] / kernel[0] == pytest.approx(np.exp(-1 / 18))  # sigma 3
    out = corruptions._motion_blur_at(dot, np.array([0.0, 90.0, 45.0]))
    # Pixel p sums kernel[j] * image[p + j * direction]: a dot trails against the direction.
    assert np.allclose(out[0, 14, 14::-1][:15], kernel[:15]) and out[0].sum() == pytest.approx(kernel[:15].sum())
    assert np.allclose(out[1, 14::-1, 14][:15], kernel[:15])
    steps = np.ceil(np.arange(15) * np.sqrt(0.5) - 0.5).astype(int)
    for j in range(15):
        assert out[2, 14 - steps[j], 14 - steps[j]] >= kernel[j] - 1e-12
    angles = np.random.default_rng(5).uniform(-180, 180, N)
    assert np.array_equal(corruptions._motion_blur_at(digits / 255.0, angles, chunk=7),
                          corruptions._motion_blur_at(digits / 255.0, angles))  # chunks change nothing
    edge = np.zeros((1, 28, 28))
    edge[0, 14, 27] = 1.0
    # Past the border ImageMagick repeats the edge pixel: every tap of (14, 27) reads it.
    assert corruptions._motion_blur_at(edge, np.array([0.0]))[0, 14, 27] == pytest.approx(1)
    blurred = corrupt("motion_blur", (np.pad(dot[:1] * 255, ((0, N - 1), (0, 0), (0, 0)), mode="edge")).astype(np.uint8))
    assert (blurred[:, :, 15:] == 0).all()  # angles in [-45, 45): every trail points left
    assert (blurred[:, :, :14] > 0).any(axis=(1, 2)).all()
    assert len({tuple(np.argwhere(b).min(axis=0)) for b in blurred}) > 5  # each image its own angle


def test_glass_blur_blurs_down_the_columns_only(monkeypatch):
    # MNIST-C's gaussian(..., multichannel=True) of a 2-D image blurred along axis 0 only.
    passes = []
    monkeypatch.setattr(corruptions, "_local_swaps", lambda img, dy, dx: passes.append(dy.shape) or img)
    line = np.zeros((2, 28, 28), np.uint8)
    line[:, 5:23, 14] = 255
    out = corrupt("glass_blur", line)
    assert (out[:, :, :14] == 0).all() and (out[:, :, 15:] == 0).all()
    once = (ndi.gaussian_filter1d(line / 255.0, 0.7, axis=1, mode="nearest") * 255).astype(np.uint8)
    twice = ndi.gaussian_filter1d(once / 255.0, 0.7, axis=1, mode="nearest")
    assert np.array_equal(out, _to_uint8(twice))
    assert passes == [(2, 26, 26)] * 2  # two shuffles of rows and columns 2-27


def _mnist_c_plasma(rng, mapsize=256, decay=1.4):
    """MNIST-C's plasma_fractal (diamond-square on a wrapping map) written out as it is there,
    drawing its noise in the same order (centres, top midpoints, left midpoints) as float32."""
    maparray = np.zeros((mapsize, mapsize), np.float32)
    stepsize, wibble = mapsize, 100.0

    def wibbledmean(total):
        a = wibble * wibble
        noise = rng.random((1, *total.shape), dtype=np.float32)[0] * np.float32(2 * a)
        return total * np.float32(0.25) + noise - np.float32(a)

    while stepsize >= 2:
        half = stepsize // 2
        corners = maparray[0::stepsize, 0::stepsize]
        square = corners + np.roll(corners, -1, axis=1)
        maparray[half::stepsize, half::stepsize] = wibbledmean(square + np.roll(square, -1, axis=0))
        centres = maparray[half::stepsize, half::stepsize]
        tops = (corners + np.roll(corners, -1, axis=1)) + centres + np.roll(centres, 1, axis=0)
        maparray[0::stepsize, half::stepsize] = wibbledmean(tops)
        lefts = (corners + np.roll(corners, -1, axis=0)) + centres + np.roll(centres, 1, axis=1)
        maparray[half::stepsize, 0::stepsize] = wibbledmean(lefts)
        stepsize //= 2
        wibble /= decay
    maparray -= maparray.min()
    return maparray / maparray.max()


def test_fog_haze_is_mnist_c_plasma_fractal_normalised_over_the_whole_map():
    expected = np.stack([_mnist_c_plasma(np.random.default_rng(7))[:28, :28]])
    got = corruptions._plasma_corners(np.random.default_rng(7), 1)
    assert got.shape == (1, 28, 28)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    many = corruptions._plasma_corners(np.random.default_rng(8), 64)
    assert 0 <= many.min() and many.max() <= 1
    assert many.max(axis=(1, 2)).mean() < 0.95  # the crop is scaled by the whole map, not by itself


def test_fog_adds_three_times_the_haze_then_rescales(digits, monkeypatch):
    decays = set()
    monkeypatch.setattr(corruptions, "_plasma_corners",
                        lambda rng, n, decay: decays.add(decay) or np.full((n, 28, 28), 0.5))
    peak = digits.max(axis=(1, 2), keepdims=True) / 255
    assert np.array_equal(corrupt("fog", digits), _to_uint8((digits / 255 + 1.5) * peak / (peak + 3)))
    assert decays == {1.4}  # severity 5


def test_spatter_equals_mnist_c_recipe_with_skimage(digits):
    from skimage.filters import gaussian

    liquid = np.random.default_rng(11).normal(0.65, 0.3, size=digits.shape)
    expected = []
    for image, layer in zip(digits / 255.0, liquid):
        layer = gaussian(layer, sigma=1)
        layer[layer < 0.65] = 0
        mud = gaussian((layer > 0.65).astype(np.float32), sigma=1.5)
        mud[mud < 0.8] = 0
        expected.append(image * (1 - mud) + 63 / 255 * mud)
    got = corrupt("spatter", digits, seed=11).astype(int)
    assert np.abs(got - _to_uint8(np.stack(expected))).max() <= 1  # float32 mask there, float64 here


def test_spatter_lays_mud_of_grey_63_on_part_of_each_image(digits):
    out = corrupt("spatter", digits)
    background = out[digits == 0]
    assert set(np.unique(background)) <= {0} | set(range(50, 64))  # 63 * mask, mask >= 0.8
    mud = (out > 0) & (digits == 0)
    covered = mud.sum(axis=(1, 2)) / (digits == 0).sum(axis=(1, 2))
    assert (covered > 0).all() and 0.05 < covered.mean() < 0.5


# ---------------------------------------------------------------------------------- the cache

def _count_regenerate(monkeypatch) -> list:
    calls = []
    original = corruptions.regenerate
    monkeypatch.setattr(corruptions, "regenerate", lambda x: calls.append(len(x)) or original(x))
    return calls


def test_cache_built_once_then_loaded_silently(tmp_path, digits, labels, monkeypatch):
    calls, messages = _count_regenerate(monkeypatch), []
    built = load_corrupted(digits, labels, SOURCE_SHA256, tmp_path / "c", log=messages.append)
    assert calls == [N] and len(messages) == 1 and "MANIFEST.json" in messages[0]
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")) == sorted(
        [f"{name}.npy" for name in CORRUPTIONS] + ["labels.npy", "MANIFEST.json"])
    manifest = json.loads((tmp_path / "c" / "MANIFEST.json").read_text())
    assert manifest["version"] == corruptions.VERSION and manifest["source_sha256"] == SOURCE_SHA256
    assert manifest["seeds"] == dict(SEEDS) and manifest["files"] == built.sha256

    loaded = load_corrupted(digits, labels, SOURCE_SHA256, tmp_path / "c", log=messages.append)
    assert calls == [N] and len(messages) == 1
    assert list(loaded.images) == list(CORRUPTIONS) and np.array_equal(loaded.labels, labels)
    for name in CORRUPTIONS:
        assert np.array_equal(loaded.images[name], built.images[name])
        assert np.array_equal(loaded.images[name], corrupt(name, digits))
    assert loaded.folder == tmp_path / "c"


def _rebuilt(tmp_path, digits, labels, monkeypatch, expect: list[str], source=SOURCE_SHA256):
    calls, messages = _count_regenerate(monkeypatch), []
    result = load_corrupted(digits, labels, source, tmp_path / "c", log=messages.append)
    assert calls == [N] and len(messages) == 1
    assert all(word in messages[0] for word in expect), messages[0]
    load_corrupted(digits, labels, source, tmp_path / "c", log=messages.append)  # now valid
    assert calls == [N] and len(messages) == 1
    return result


def test_partial_cache_is_rebuilt(tmp_path, digits, labels, monkeypatch):
    load_corrupted(digits, labels, SOURCE_SHA256, tmp_path / "c", log=lambda m: None)
    (tmp_path / "c" / "fog.npy").unlink()
    result = _rebuilt(tmp_path, digits, labels, monkeypatch, ["partial", "fog.npy", "missing"])
    assert np.array_equal(np.load(tmp_path / "c" / "fog.npy"), result.images["fog"])


def test_tampered_cache_is_rebuilt(tmp_path, digits, labels, monkeypatch):
    built = load_corrupted(digits, labels, SOURCE_SHA256, tmp_path / "c", log=lambda m: None)
    path = tmp_path / "c" / "rotate.npy"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x01  # one bit of one pixel: the file still loads, only its digest tells
    path.write_bytes(bytes(raw))
    _rebuilt(tmp_path, digits, labels, monkeypatch, ["tampered", "rotate.npy", "SHA-256"])
    assert np.array_equal(np.load(path), built.images["rotate"])


def test_stale_cache_is_rebuilt(tmp_path, digits, labels, monkeypatch):
    load_corrupted(digits, labels, SOURCE_SHA256, tmp_path / "c", log=lambda m: None)
    monkeypatch.setattr(corruptions, "VERSION", corruptions.VERSION + 1)
    _rebuilt(tmp_path, digits, labels, monkeypatch, ["stale", "version"])
    assert json.loads((tmp_path / "c" / "MANIFEST.json").read_text())["version"] == corruptions.VERSION
    _rebuilt(tmp_path, digits, labels, monkeypatch, ["stale", "source_sha256"], source="1" * 64)
    monkeypatch.setattr(corruptions, "SEEDS", {**SEEDS, "fog": SEEDS["fog"] + 1})
    result = _rebuilt(tmp_path, digits, labels, monkeypatch, ["stale", "seeds"], source="1" * 64)
    assert np.array_equal(result.images["fog"], corrupt("fog", digits, seed=SEEDS["fog"] + 1))


def test_cache_of_other_test_images_is_rebuilt(tmp_path, digits, labels, monkeypatch):
    load_corrupted(digits, labels, SOURCE_SHA256, tmp_path / "c", log=lambda m: None)
    other = digits.copy()
    other[0, 0, 0] = 1  # e.g. a --limit run: same source file, other array
    calls, messages = _count_regenerate(monkeypatch), []
    load_corrupted(other, labels, SOURCE_SHA256, tmp_path / "c", log=messages.append)
    assert calls == [N] and "x_test_sha256" in messages[0]


def test_interrupted_build_is_not_mistaken_for_a_cache(tmp_path, digits, labels, monkeypatch):
    load_corrupted(digits, labels, SOURCE_SHA256, tmp_path / "c", log=lambda m: None)
    monkeypatch.setattr(corruptions, "VERSION", corruptions.VERSION + 1)
    original, written = corruptions._write_atomically, []

    def killed_after_three(path, data):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path.name)
        original(path, data)

    monkeypatch.setattr(corruptions, "_write_atomically", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        load_corrupted(digits, labels, SOURCE_SHA256, tmp_path / "c", log=lambda m: None)
    monkeypatch.setattr(corruptions, "_write_atomically", original)
    assert not (tmp_path / "c" / "MANIFEST.json").exists()
    _rebuilt(tmp_path, digits, labels, monkeypatch, ["MANIFEST.json"])


def test_concurrent_loads_build_once(tmp_path, digits, labels, monkeypatch):
    calls, messages = _count_regenerate(monkeypatch), []
    start = threading.Barrier(2)

    def load():
        start.wait()
        return load_corrupted(digits, labels, SOURCE_SHA256, tmp_path / "c", log=messages.append)

    with ThreadPoolExecutor(2) as pool:
        first, second = [f.result() for f in [pool.submit(load), pool.submit(load)]]
    assert calls == [N] and len(messages) == 1
    assert all(np.array_equal(first.images[k], second.images[k]) for k in CORRUPTIONS)


def test_cache_dir_for():
    assert cache_dir_for(Path("data")) == Path("data/mnist-c-regenerated")
    assert cache_dir_for(Path("d"), "fashion_mnist") == Path("d/fashion-mnist-c-regenerated")
    with pytest.raises(ValueError, match="No dataset named"):
        cache_dir_for(Path("d"), "cifar")


# --------------------------------------------------------------------------------- the figure

def test_figure_shows_the_clean_digit_then_every_corruption(digits):
    corrupted = regenerate(digits)
    fig = plot_corruptions(digits, corrupted, index=3)
    try:
        assert len(fig.axes) == 16
        assert LABEL in fig._suptitle.get_text()
        assert [ax.get_title() for ax in fig.axes] == ["clean", *CORRUPTIONS]
        shown = [np.asarray(ax.images[0].get_array()) for ax in fig.axes]
        assert np.array_equal(shown[0], digits[3])
        assert all(np.array_equal(s, corrupted[name][3]) for s, name in zip(shown[1:], CORRUPTIONS))
    finally:
        plt.close(fig)
