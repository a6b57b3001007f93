"""Bad input read from run folders, files and images: one clear line naming what, where and the
fix, a non-zero exit, and nothing already written lost."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.predict import MAX_PIXELS, digit_warnings, read_gray
from mnistlab.results import latest_runs, load_runs
from mnistlab.runs import new_run_name, write_json
from mnistlab.train import train_and_evaluate

pytestmark = pytest.mark.slow  # training runs


@pytest.fixture
def slp_run(tmp_path, tiny_data):
    return train_and_evaluate(make_config("slp", epochs=1, verbose=0), tmp_path / "runs", data=tiny_data)


def test_a_damaged_run_folder_is_listed_not_fatal(slp_run):
    runs_dir = slp_run.parent
    broken = runs_dir / "broken-run"
    broken.mkdir()
    (broken / "config.json").write_text('{"config": {"model": "slp"')  # truncated
    (broken / "status.json").write_text("{}")
    table = load_runs(runs_dir).set_index("run")
    assert table.loc["broken-run", "status"] == "unreadable"
    assert "broken-run/config.json: cannot read it as JSON" in table.loc["broken-run", "detail"]
    counted, not_counted = latest_runs(load_runs(runs_dir))
    assert counted.run.tolist() == [slp_run.name] and not_counted.reason.tolist() == ["unreadable"]


def test_predict_with_a_damaged_class_list(slp_run, tmp_path, capsys):
    record = json.loads((slp_run / "config.json").read_text())
    record["data"]["class_names"] = ["0", "1"]
    (slp_run / "config.json").write_text(json.dumps(record))
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", "--run", str(slp_run), str(tmp_path / "x.png")]) == 2
    assert "do not name the model's 10 classes: its config.json is damaged" in capsys.readouterr().err


def test_ensemble_of_a_runs_folder_takes_one_variant(tmp_path, tiny_data, capsys):
    runs_dir = tmp_path / "best"
    for seed in (0, 1):
        train_and_evaluate(make_config("slp", epochs=1, seed=seed, verbose=0), runs_dir, data=tiny_data)
    interrupted = runs_dir / ".tmp-slp-old"
    interrupted.mkdir()
    assert main(["ensemble", "--runs-dir", str(runs_dir), "--model", "slp"]) == 0
    out = capsys.readouterr().out
    assert "the latest completed run of each of 2 seeds" in out and "ensemble of 2:" in out
    assert json.loads((runs_dir / "ensemble.json").read_text())["runs"] == sorted(
        p.name for p in runs_dir.glob("slp-*"))
    # --against a model with no runs there: refused, naming the option, before anything is written.
    (runs_dir / "ensemble.json").unlink()
    assert main(["ensemble", "--runs-dir", str(runs_dir), "--model", "slp", "--against", "bn_cnn"]) == 2
    assert "--against bn_cnn: " in capsys.readouterr().err and not (runs_dir / "ensemble.json").exists()
    train_and_evaluate(make_config("slp", epochs=2, verbose=0), runs_dir, data=tiny_data)
    assert main(["ensemble", "--runs-dir", str(runs_dir), "--model", "slp"]) == 2
    assert "holds completed runs of 2 variants of 'slp'" in capsys.readouterr().err


def test_run_names_and_temporary_files_are_unique(tmp_path):
    assert len({new_run_name("mlp") for _ in range(10_000)}) == 10_000
    for i in range(20):
        write_json(tmp_path / "a.json", {"i": i})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_existing_run_folder_is_a_clean_refusal(slp_run, tiny_data):
    with pytest.raises(FileExistsError, match="exists already"):
        train_and_evaluate(make_config("slp", epochs=1, verbose=0), slp_run.parent, run_name=slp_run.name,
                           data=tiny_data)
    assert json.loads((slp_run / "status.json").read_text())["status"] == "completed"


def test_data_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["data", "--data-dir", str(tmp_path / "file"), "--datasets", "mnist"]) == 2
    assert "cannot create" in capsys.readouterr().err


def test_rerun_checks_the_folder_before_anything(tmp_path, capsys):
    assert main(["rerun", str(tmp_path / "nowhere")]) == 2
    assert "holds no config.json: not a run folder" in capsys.readouterr().err


def test_compare_with_every_run_diverged(tmp_path, tiny_data):
    import papermill as pm

    from mnistlab.task import execute_notebook

    train_and_evaluate(make_config("mlp", epochs=3, batch_size=32, learning_rate=10.0, verbose=0), tmp_path / "runs",
                       data=tiny_data)
    with pytest.raises(pm.PapermillExecutionError, match="No completed run of 'mnist'"):
        execute_notebook("compare_runs.ipynb", tmp_path / "out.ipynb", {"runs_dir": str(tmp_path / "runs")},
                         log_output=False)


# ---- images for predict ----------------------------------------------------------------------


def _digit(size=200) -> np.ndarray:
    image = np.zeros((size, size), np.uint8)
    image[size // 5: 4 * size // 5, size // 2 - size // 20: size // 2 + size // 20] = 255  # a "1"
    return image


def test_transparent_canvas_is_composited_onto_white(tmp_path):
    alpha = _digit()
    rgba = np.zeros((*alpha.shape, 4), np.uint8)
    rgba[..., 3] = alpha  # black strokes, transparent elsewhere
    Image.fromarray(rgba, "RGBA").save(tmp_path / "canvas.png")
    gray = read_gray(tmp_path / "canvas.png")
    assert gray[0, 0] == 255 and gray[100, 100] == 0  # dark digit on a white page


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.ascontiguousarray(np.rot90(_digit(), 1)))  # stored lying on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "phone.jpg", exif=exif)
    gray = read_gray(tmp_path / "phone.jpg")
    rows, cols = np.nonzero(gray > 128)
    assert rows.max() - rows.min() > 2 * (cols.max() - cols.min())  # upright again: taller than wide


def test_oversized_image_is_refused_per_file(tmp_path, capsys, slp_run):
    side = int(MAX_PIXELS**0.5) + 10
    # A PNG header that claims side x side pixels: refused before decoding.
    Image.new("1", (side, side)).save(tmp_path / "huge.png")
    Image.fromarray(255 - _digit()).save(tmp_path / "ok.png")
    code = main(["predict", "--run", str(slp_run), str(tmp_path / "huge.png"), str(tmp_path / "ok.png")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1 and len(lines) == 2
    assert "huge.png: " in lines[0] and "more than the 40,000,000 accepted" in lines[0]
    assert lines[1].startswith(str(tmp_path / "ok.png")) and lines[1].count(",") >= 2


def test_faint_or_tiny_digits_get_a_warning():
    big = np.full((3000, 3000), 255, np.uint8)
    big[1500, 1000:1010] = 0  # a 1-pixel stroke in a huge field
    assert any("tiny" in w for w in digit_warnings(big))
    faint = 255 - (_digit() // 8)
    assert any("faint" in w for w in digit_warnings(faint))
    assert digit_warnings(255 - _digit()) == []
