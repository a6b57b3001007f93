"""Every notebook executed by papermill in smoke mode, and the committed notebooks kept clean."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import papermill as pm
import pytest

from mnistlab.run_all import run_all
from mnistlab.task import NOTEBOOKS_DIR, execute_notebook

pytestmark = pytest.mark.slow  # subprocesses, notebooks or Dask

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs_and_a_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear outputs before committing"
    assert "parameters" in code[0].metadata.get("tags", [])
    assert nb.metadata.kernelspec.name == "mnistlab"
    # papermill must parse every parameter (it ignores lines it cannot, e.g. `int | None`).
    assignments = [line for line in code[0].source.splitlines() if "=" in line.split("#")[0]]
    assert len(pm.inspect_notebook(str(path))) == len(assignments)
    assert all("#" in line for line in assignments), "comment every parameter"


def test_run_all_smoke(tmp_path, real_data_dir, monkeypatch, capfd):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    compare = run_all(["slp", "cnn"], runs_dir=tmp_path, epochs=1, limit=300)
    assert compare == tmp_path / "compare_runs.ipynb" and compare.is_file()
    # The console shows runs, epochs, results and the comparison; the logs go to each train.log.
    out, err = capfd.readouterr()
    console = out + err
    for noise in ("cuInit", "absl", "Executing Cell", "Styler at 0x", "Figure size", "cpu_feature_guard"):
        assert noise not in console, noise
    assert "[1/2] slp seed 0" in console and "epoch 1/1" in console and "test accuracy" in console
    assert "vs the best" in console and "Best: " in console
    # The first run's kernel started (and imported TensorFlow) while run-all checked the builders.
    assert "cuInit" in (tmp_path / ".logs" / "kernel.log").read_text()
    run_dirs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name.split("-")[0] for p in run_dirs] == ["cnn", "slp"]
    for run_dir in run_dirs:
        executed = nbformat.read(run_dir / "train_model.ipynb", as_version=4)
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
        # The whole config, as planned, is the notebook's parameter.
        record = json.loads((run_dir / "config.json").read_text())
        namespace = {}
        exec(injected[0].source, namespace)
        assert namespace["config"] == record["config"]
        assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 1
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary.model.tolist() == ["slp", "cnn"] and summary.test_accuracy.between(0, 1).all()
    by_model = pd.read_csv(tmp_path / "by_model.csv")
    assert by_model.model.tolist() == ["slp", "cnn"] and by_model.n_runs.tolist() == [1, 1]
    pairwise = pd.read_csv(tmp_path / "pairwise.csv")
    assert len(pairwise) == 1 and 0 < pairwise.p_value[0] <= 1
    for figure in ("comparison.png", "accuracy.png", "pairwise.png"):
        assert (tmp_path / figure).stat().st_size > 10_000, figure
    assert not list((tmp_path / ".notebooks").glob("*.ipynb"))
    # run_all_timing.json: per run, training and the rest, the rest by stage and outside the run.
    timing = json.loads((tmp_path / "run_all_timing.json").read_text())
    assert timing["comparison_seconds"] > 0 and timing["outside_the_runs_seconds"] >= 0
    for run in timing["runs"]:
        stages, outside = run["stage_seconds"], run["outside_the_run_seconds"]
        assert set(stages) == {"checks_and_data", "build", "evaluation", "figures", "saving", "tensorboard"}
        assert outside > 0 and sum(stages.values()) + outside <= run["around_seconds"] + 0.01

    from mnistlab.report import render_report

    html = render_report(compare, tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4  # figures inlined (the Pareto view too): one file to open
    assert "The answer" in html and "Best: " in html and "significantly better on every seed than" in html
    for raw in ("pairwise_mcnemar(", "absl::InitializeLog", "&lt;pandas.io.formats.style.Styler", "&lt;Figure size",
                "<pandas.io.formats.style.Styler", "<Figure size"):
        assert raw not in html, raw  # no code, no TF log, no object reprs


def test_failing_notebook_shows_the_cells_error(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="No model named 'nope' found"):
        execute_notebook("train_model.ipynb", tmp_path / "out.ipynb", {"config": {"model": "nope"}}, log_output=False)


def test_compare_with_no_runs_fails_clearly(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="No run folders in"):
        execute_notebook("compare_runs.ipynb", tmp_path / "out.ipynb", {"runs_dir": str(tmp_path)},
                         log_output=False)


def test_explore_data_notebook(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    out = execute_notebook("explore_data.ipynb", tmp_path / "explore.ipynb", {"dataset": "fashion_mnist"},
                           log_output=False)
    nb = nbformat.read(out, as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # class counts, sample grid, histograms, class means
    assert "Ankle boot" in json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])


def test_lr_finder_notebook(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    execute_notebook("lr_finder.ipynb", tmp_path / "lr.ipynb", log_output=False,
                     parameters={"model": "slp", "steps": 40, "limit": 1000, "runs_dir": str(tmp_path)})
    (folder,) = tmp_path.glob("lr_finder-slp-*")
    assert json.loads((folder / "lr_finder.json").read_text())["steps"] == 40


def test_tuning_study_notebook(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    parameters = {"runs_dir": str(tmp_path), "short_epochs": 1, "long_epochs": 1, "longer_epochs": 2,
                  "finder_steps": 30, "limit": 1000}
    execute_notebook("tuning_study.ipynb", tmp_path / "study.ipynb", parameters, log_output=False)
    study = pd.read_csv(tmp_path / "tuning_study.csv")
    assert len(study) == 5 and study["test accuracy"].between(0, 1).all()
    assert study.article.tolist()[0] == "train 0.66"
    trained = lambda: sorted(p.name for p in tmp_path.glob("*_mlp-*") if not p.name.startswith("lr_finder"))
    runs = trained()
    assert len(runs) == 5
    # Executed again, it reuses every completed step instead of training it again.
    execute_notebook("tuning_study.ipynb", tmp_path / "again.ipynb", parameters, log_output=False)
    assert trained() == runs


def test_your_model_notebook(tmp_path, real_data_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    out = execute_notebook("your_model.ipynb", tmp_path / "your_model.ipynb", log_output=False,
                           parameters={"seeds": 1, "epochs": 1, "limit": 300, "runs_dir": str(tmp_path / "runs")})
    nb = nbformat.read(out, as_version=4)
    text = json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])
    # The model of a cell trains in the kernel ...
    (cell_run,) = (tmp_path / "runs" / "in-this-kernel").glob("my_cnn-*")
    record = json.loads((cell_run / "config.json").read_text())
    assert record["model"]["origin"] == {"kind": "session"} and (cell_run / "model.keras").is_file()
    # ... and is refused by run-all with the fix; the example file's model is compared with bn_cnn.
    assert "model 'my_cnn' was registered in this Python session" in text and "--models-from FILE" in text
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "runs").glob("*-2*")) == ["bn_cnn", "lenet5"]
    lenet = json.loads(next((tmp_path / "runs").glob("lenet5-*/config.json")).read_text())
    assert lenet["model"]["origin"]["path"].endswith("examples/lenet5.py") and lenet["model"]["params"] == 61_706
    assert "Best: " in text and "lenet5" in text and "image/png" in text


def test_a_prestarted_kernel_has_imported_tensorflow_and_read_the_data(real_data_dir, monkeypatch):
    """Kernels.prestart: the kernel a run of the config takes has done the run's first work."""
    from mnistlab.config import make_config
    from mnistlab.task import Kernels

    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(real_data_dir))
    kernels = Kernels()
    try:
        kernels.prestart(make_config("slp"))
        manager = kernels.manager
        assert kernels.for_config(make_config("mlp")) is manager
        client = manager.client()
        client.start_channels()
        outputs = []
        try:
            client.wait_for_ready(timeout=60)
            client.execute_interactive("import sys, mnistlab.data\nprint('tensorflow' in sys.modules, "
                                       "len(mnistlab.data._PAIRS) > 0)", timeout=60,
                                       output_hook=lambda m: outputs.append(
                                           m["content"]["text"] if m["msg_type"] == "stream"
                                           and m["content"]["name"] == "stdout" else ""))
        finally:
            client.stop_channels()
        assert "".join(outputs).split() == ["True", "True"]
    finally:
        kernels.shutdown()


def test_runs_share_a_kernel_with_an_empty_namespace(monkeypatch):
    """mnistlab.task.Kernels: the next run of the same process settings reuses the kernel (no
    start, no TensorFlow import again) with its namespace emptied; other threads get a new one."""
    from mnistlab.config import make_config
    from mnistlab.task import Kernels

    def run(manager, code):
        client = manager.client()
        client.start_channels()
        outputs = []
        try:
            client.wait_for_ready(timeout=60)
            client.execute_interactive(code, timeout=60, output_hook=lambda m: outputs.append(m["content"]))
        finally:
            client.stop_channels()
        return " ".join(str(o.get("text") or o.get("evalue") or "") for o in outputs)

    kernels = Kernels()
    try:
        first = kernels.for_config(make_config("slp"))
        run(first, "left_behind = 42\nimport os\nprint(os.getpid())")
        pid = run(first, "print(os.getpid())").strip()
        second = kernels.for_config(make_config("mlp", seed=3))
        assert second is first and run(second, "import os\nprint(os.getpid())").strip() == pid
        assert "left_behind" in run(second, "print(left_behind)")  # NameError: 'left_behind' is not defined
        assert "not defined" in run(second, "print(left_behind)")
        third = kernels.for_config(make_config("slp", threads=1))  # threads are fixed once a process starts them
        assert run(third, "import os\nprint(os.getpid())").strip() != pid
        # A notebook after the runs (run-all's comparison) takes the live kernel, its namespace emptied.
        run(third, "left_behind = 42")
        assert kernels.reuse() is third and "not defined" in run(third, "print(left_behind)")
        kernels.shutdown()
        assert kernels.reuse() is None  # none alive: the notebook starts its own
    finally:
        kernels.shutdown()
