"""JupyterLab and the HTML report in a real browser: headless Chromium, driven through selenium,
opens the project's JupyterLab (without its news question), runs train_model.ipynb and
compare_runs.ipynb cell by cell in smoke mode and reads from the page that no output carries
TensorFlow's start-up noise and that the tables and figures are there; then report.html shows
its headline and every figure.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them) and selenium. One
JupyterLab server (a free loopback port, a random token) and one browser serve the module's tests
(one of each per xdist worker that runs some); support code in tests/jupyterlab_driver.py. Screenshots for a person to look at are saved as
runs/screenshots/<test name>-<notebook>.png (runs/ is git-ignored).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from pathlib import Path

import papermill as pm
import pytest

from jupyterlab_driver import (Cell, chromium, jupyterlab_server, learner_environment, open_lab, run_notebook,
                               save_screenshot, toasts, wait_for_images)
from mnistlab.data import DATA_DIR_ENV, PROJECT_DIR
from mnistlab.report import render_report
from mnistlab.run_all import run_all
from mnistlab.runs import RUNS_DIR_ENV

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Lines of TensorFlow's C++ start-up log that must never reach a learner's cell outputs.
TENSORFLOW_NOISE = ("absl", "cuInit", "cudart", "oneDNN custom operations")
SMOKE = {"epochs": 1, "limit": 300}
HEADLINE = re.compile(r"^(Best: |One variant)", re.MULTILINE)
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
OVERRIDES = NOTEBOOKS_DIR / "jupyterlab-overrides.json"  # `make setup` installs it into the venv
NEWS_QUESTION_SECONDS = 5  # JupyterLab asks within a second or two of restoring its layout, if at all


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def lab(workdir, real_data_dir):
    """JupyterLab serving an empty folder; its kernels read the real MNIST and write any run
    without a runs folder into the test's own folder."""
    root_dir = workdir / "lab"
    root_dir.mkdir()
    env = {DATA_DIR_ENV: str(real_data_dir), RUNS_DIR_ENV: str(workdir / "default-runs")}
    with jupyterlab_server(root_dir, workdir / "jupyter", env) as server:
        yield server


@pytest.fixture(scope="module")
def browser(workdir):
    with chromium(workdir / "chromium-profile") as driver:
        yield driver


@pytest.fixture(scope="module")
def compared_runs(tmp_path_factory, real_data_dir) -> Path:
    """A runs folder with an slp and an mlp run (one epoch, 300 images) and the executed
    compare_runs.ipynb that run-all writes beside them. Made once per session even when xdist
    gives this module's tests to several workers: they share the parent of their temporary
    folders, and the first to take the lock makes it."""
    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent
    runs_dir = shared / "browser-compared-runs"
    with open(shared / "browser-compared-runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (runs_dir / "compare_runs.ipynb").is_file():
            with pytest.MonkeyPatch.context() as env:
                env.setenv(DATA_DIR_ENV, str(real_data_dir))
                for key in set(os.environ) - set(learner_environment()):
                    env.delenv(key)  # the kernels then show TensorFlow's C++ lines as a learner's do
                run_all(["slp", "mlp"], runs_dir=runs_dir, log_output=False, **SMOKE)
    return runs_dir


def prepare(name: str, folder: Path, parameters: dict) -> str:
    """notebooks/<name> with `parameters` injected by papermill but not executed, written into
    `folder` (the server's root); returns its path there. The kernel's working folder is then
    `folder`, not notebooks/: pass folders as absolute paths."""
    pm.execute_notebook(str(NOTEBOOKS_DIR / name), str(folder / name), parameters=parameters,
                        prepare_only=True, progress_bar=False)  # on the notebook's own kernel, mnistlab
    return name


def in_section(cells: list[Cell], heading: str | None) -> list[Cell]:
    """The cells under the markdown heading starting with `heading` (every cell for None)."""
    if heading is None:
        return cells
    found = [c for c in cells if c.section.startswith(heading)]
    assert found, f"no section {heading!r}; the notebook's sections: {sorted({c.section for c in cells})}"
    return found


def figures(cells: list[Cell], section: str | None = None) -> list[int]:
    """The natural width of every image in the outputs (of one section)."""
    return [w for c in in_section(cells, section) for o in c.outputs for w in o.image_widths]


def tables(cells: list[Cell], section: str | None = None, containing: str = "") -> list[str]:
    """The text of every output (of one section) that holds a table and `containing`."""
    return [o.text for c in in_section(cells, section) for o in c.outputs if o.tables and containing in o.text]


def assert_every_cell_ran(cells: list[Cell]) -> None:
    code = [c for c in cells if c.cell_type == "code"]
    assert code, "the page shows no code cell"
    failed = [f"{c.label}: {'; '.join(c.errors)}" for c in code if c.errors]
    assert not failed, "cells failed:\n" + "\n".join(failed)
    not_run = [f"{c.label} {c.prompt}" for c in code if not c.executed]
    assert not not_run, "cells not run:\n" + "\n".join(not_run)


def assert_figures_loaded(widths: list[int], where: str) -> None:
    assert widths, f"no figure in {where}"
    assert min(widths) > 0, f"{widths.count(0)} of {len(widths)} figures in {where} did not load"


def assert_no_tensorflow_noise(cells: list[Cell]) -> None:
    noisy = [f"{c.label}, {o.mime_type} output, {noise!r}:\n    "
             + next(line for line in o.text.splitlines() if noise in line)[:300]
             for c in cells for o in c.outputs for noise in TENSORFLOW_NOISE if noise in o.text]
    assert not noisy, "TensorFlow's start-up log in the cell outputs:\n" + "\n".join(noisy)


def test_jupyterlab_opens_without_the_news_question(lab, browser, request):
    installed = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert installed.is_file() and json.loads(installed.read_text()) == json.loads(OVERRIDES.read_text()), \
        f"{installed} is not a copy of {OVERRIDES.relative_to(PROJECT_DIR)}: run `make setup`"
    open_lab(browser, lab)
    deadline = time.monotonic() + NEWS_QUESTION_SECONDS
    while not toasts(browser) and time.monotonic() < deadline:
        time.sleep(0.25)
    shown = toasts(browser)
    save_screenshot(browser, f"{request.node.name}-lab")
    assert not shown, f"JupyterLab opened with notifications: {shown}"


def test_train_model_notebook_in_jupyterlab(lab, browser, workdir, request):
    notebook = prepare("train_model.ipynb", lab.root_dir,
                       {"config": {"model": "slp", **SMOKE}, "runs_dir": str(workdir / "train-runs")})
    cells = run_notebook(browser, lab, notebook, screenshot=f"{request.node.name}-train_model")
    assert_every_cell_ran(cells)
    # The config as a table (not one long line), the live figure and its progress bar, the results.
    assert tables(cells, containing="learning_rate"), "no table of the run's settings"
    training = in_section(cells, "Train and evaluate")
    assert_figures_loaded(figures(cells, "Train and evaluate"), "the live training figure")
    bars = [o for c in training for o in c.outputs if "training" in o.text and "100%" in o.text]
    assert bars, "no progress bar (tqdm's) with its time under 'Train and evaluate': " + \
        repr([o.text[:200] for c in training for o in c.outputs])
    assert not [o for c in training for o in c.outputs if o.text.startswith("epoch ")], "epoch lines beside the figure"
    assert tables(cells, "Results", containing="test_accuracy"), "no results table (the run's metrics)"
    assert_figures_loaded(figures(cells), "train_model.ipynb")
    assert_no_tensorflow_noise(cells)


def test_compare_runs_notebook_in_jupyterlab(lab, browser, compared_runs, request):
    notebook = prepare("compare_runs.ipynb", lab.root_dir, {"runs_dir": str(compared_runs)})
    cells = run_notebook(browser, lab, notebook, screenshot=f"{request.node.name}-compare_runs")
    assert_every_cell_ran(cells)
    answer = "\n".join(o.text for c in in_section(cells, "The answer") for o in c.outputs)
    assert HEADLINE.search(answer), f"no headline under 'The answer':\n{answer[:1000]}"
    assert tables(cells, "The answer", containing="vs the best"), "no comparison table under 'The answer'"
    # McNemar's verdict on every pair, as a table and as a heatmap; beyond clean accuracy.
    assert tables(cells, "Which differences are real"), "no pairwise table"
    assert_figures_loaded(figures(cells, "Which differences are real"), "the pairwise view")
    assert tables(cells, "Robustness", containing="fog"), "no accuracy per corruption"
    assert_figures_loaded(figures(cells, "Robustness"), "the corruption heatmap")
    assert tables(cells, "Calibration", containing="ECE"), "no calibration table"
    assert_figures_loaded(figures(cells, "Calibration"), "the reliability diagrams")
    assert_figures_loaded(figures(cells, "Where two variants disagree"), "the disagreement gallery")
    # The A-vs-B view: two menus, then the pair's curves, verdict, differences and corruptions.
    side = in_section(cells, "Two variants side by side")
    text = "\n".join(o.text for c in side for o in c.outputs)
    assert "McNemar's exact test over" in text, f"no verdict in the A-vs-B view:\n{text[:800]}"
    assert_figures_loaded(figures(cells, "Two variants side by side"), "the A-vs-B view")
    assert sum(o.menus for c in side for o in c.outputs) >= 2, "no menus to pick the two variants"
    assert_figures_loaded(figures(cells), "compare_runs.ipynb")
    assert_no_tensorflow_noise(cells)


def test_report_html_in_chromium(browser, compared_runs, workdir, request):
    report = render_report(compared_runs / "compare_runs.ipynb", workdir / "report.html")
    browser.get(report.as_uri())
    wait_for_images(browser)
    text = browser.execute_script("return document.body.innerText")
    widths = browser.execute_script("return [...document.images].map(img => img.naturalWidth)")
    save_screenshot(browser, f"{request.node.name}-report")
    assert HEADLINE.search(text), f"no headline in {report}:\n{text[:1000]}"
    assert "Most robust: " in text and "McNemar's exact test over" in text  # beyond accuracy; the default pair
    assert_figures_loaded(widths, "report.html")
    noisy = [noise for noise in TENSORFLOW_NOISE if noise in text]
    assert not noisy, f"TensorFlow's start-up log in report.html: {noisy}"
