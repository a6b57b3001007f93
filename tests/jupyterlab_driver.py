"""Browser-test support: JupyterLab from this venv on a loopback port, headless Chromium driven by
selenium, and what a test does in the page (open a notebook, run every cell, read what the cells
show, save a full-page screenshot)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PROJECT_DIR = Path(__file__).resolve().parents[1]
SCREENSHOTS_DIR = PROJECT_DIR / "runs" / "screenshots"  # runs/ is git-ignored

# Debian's packages (`apt-get install chromium chromium-driver`, as .ci/run does). Selenium gets both
# paths, so selenium-manager never tries to download a browser or a driver.
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Without the background-networking flags Chromium keeps calling Google's services, which a
# closed network refuses.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
WINDOW_WIDTH, WINDOW_HEIGHT = 1400, 900
MAX_SCREENSHOT_HEIGHT = 16_000  # below Chromium's largest texture (16,384 px)

# Test-only user settings: every cell stays attached to the page (JupyterLab's default skips the
# rendering of cells out of view), so all of them can be read and photographed at once.
TEST_USER_SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}}


# ---------------------------------------------------------------------------------------------
# The JupyterLab server

@dataclass(frozen=True)
class JupyterLab:
    """A running JupyterLab server: its base URL (`http://127.0.0.1:<port>/`), token, the folder
    it serves and its log file."""

    url: str
    token: str
    root_dir: Path
    log: Path

    @property
    def lab_url(self) -> str:
        # `reset` starts from the default workspace: no tab of an earlier test is restored.
        return f"{self.url}lab?reset&token={self.token}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def jupyterlab_server(root_dir: Path, state_dir: Path, env: dict[str, str] | None = None,
                      timeout: float = 90) -> Iterator[JupyterLab]:
    """JupyterLab of this venv (the folder of `sys.executable`) on a free 127.0.0.1 port with a
    random token, serving `root_dir`, with `window.jupyterapp` exposed so that a test can run its
    commands. Its user settings, workspaces, config and runtime files live in `state_dir`, so it
    opens as on a learner's first day (the venv's overrides.json applies) and nothing in ~/.jupyter
    is read or written; `env` is added to the server's (and so the kernels') environment.

    Yields once the server answers. On exit, stops it and every process it started (kernels
    included), whatever happened. Raises RuntimeError with the end of its log if it exits or does
    not answer within `timeout` seconds."""
    port, token = free_port(), secrets.token_urlsafe(24)
    state_dir.mkdir(parents=True, exist_ok=True)
    settings_dir = state_dir / "user-settings"
    for relative, values in TEST_USER_SETTINGS.items():
        (settings_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (settings_dir / relative).write_text(json.dumps(values))
    server_env = {**learner_environment(), **(env or {}),
                  "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
                  "JUPYTERLAB_WORKSPACES_DIR": str(state_dir / "workspaces"),
                  "JUPYTER_CONFIG_DIR": str(state_dir / "config"),
                  "JUPYTER_RUNTIME_DIR": str(state_dir / "runtime")}
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
               "--LabApp.expose_app_in_browser=True"]
    log = state_dir / "jupyterlab.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, env=server_env, cwd=root_dir, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        lab = JupyterLab(f"http://127.0.0.1:{port}/", token, root_dir, log)
        _wait_until_answering(lab, process, timeout)
        yield lab
    finally:
        stop_process_tree(process.pid)
        process.wait()


def learner_environment() -> dict[str, str]:
    """This process's environment without pytest's variables. A kernel that sees
    PYTEST_CURRENT_TEST leaves its C++ libraries' stderr out of the cell outputs (ipykernel's
    choice, so as not to fight pytest's capture), so it would hide exactly what a learner sees."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}


def _wait_until_answering(lab: JupyterLab, process: subprocess.Popen, timeout: float) -> None:
    # Loopback only: no proxy from the environment may come between.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{lab.url}api/status", headers={"Authorization": f"token {lab.token}"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}:\n{log_tail(lab.log)}")
        try:
            with opener.open(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer on {lab.url} within {timeout:.0f} s:\n{log_tail(lab.log)}")


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_process_tree(pid: int, timeout: float = 20) -> None:
    """Stop a process politely (SIGTERM: JupyterLab then shuts its kernels down) and then every
    process it had started that is still alive, by force if need be."""
    try:
        parent = psutil.Process(pid)
        family = parent.children(recursive=True)
        parent.terminate()
    except psutil.NoSuchProcess:
        return
    _, alive = psutil.wait_procs([parent], timeout=timeout)
    for process in alive:
        process.kill()
    _, alive = psutil.wait_procs(family, timeout=5)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=5)


# ---------------------------------------------------------------------------------------------
# The browser

@contextlib.contextmanager
def chromium(profile_dir: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium (Debian's, through Debian's chromedriver) with a fresh profile in
    `profile_dir`, a 1400x900 window. Quits it and ends every process it started on exit.
    Raises FileNotFoundError naming the fix if Chromium or chromedriver is missing."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: `apt-get install -y chromium chromium-driver` "
                                    "(.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile_dir.parent / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_script_timeout(120)
        yield driver
    finally:
        try:
            chromedriver = psutil.Process(service.process.pid)
            family = [chromedriver, *chromedriver.children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        driver.quit()
        # chromium may take a moment to follow; no renderer or helper is left behind.
        _, alive = psutil.wait_procs([p for p in family if p.is_running()], timeout=10)
        for process in alive:
            process.kill()


def wait_for(driver: webdriver.Chrome, script: str, timeout: float, what: str, *args) -> object:
    """Poll `script` (a JavaScript function body) until it returns something truthy; that value.
    Raises TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(0.25)


def wait_for_images(driver: webdriver.Chrome, timeout: float = 15) -> None:
    """Wait until every <img> of the page has finished loading (successfully or not)."""
    wait_for(driver, "return [...document.images].every(img => img.complete)", timeout, "images loading")


def save_screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """A full-page PNG at runs/screenshots/<name>.png: the window is made as tall as the page's
    content (a document, or the notebook JupyterLab shows, which scrolls inside the page), at most
    16,000 px, then back to 1400x900. Returns its path."""
    # The window's outer height, plus what the content needs beyond what it is shown in now. A
    # notebook's scroll area is padded at the end by its own height (to scroll its last cell to the
    # top), so its content is measured inside that padding.
    needed = """
        const notebook = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
        const [content, shown] = notebook
          ? [notebook.querySelector('.jp-WindowedPanel-inner').scrollHeight + 60, notebook.clientHeight]
          : [document.scrollingElement.scrollHeight, document.scrollingElement.clientHeight];
        return window.outerHeight + Math.max(0, content - shown);"""
    # From the top: running the cells leaves a notebook scrolled to its last one.
    driver.execute_script("document.querySelectorAll('.jp-WindowedPanel-outer').forEach(e => { e.scrollTop = 0; });"
                          "window.scrollTo(0, 0);")
    height = WINDOW_HEIGHT
    for _ in range(3):  # the layout follows the new size; a second look confirms it settled
        target = min(MAX_SCREENSHOT_HEIGHT, int(driver.execute_script(needed)))
        if target <= height:
            break
        height = target
        driver.set_window_size(WINDOW_WIDTH, height)
        driver.execute_async_script("const done = arguments[0];"
                                    "requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 300)));")
    wait_for_images(driver)
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS_DIR / f"{name}.png"
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"Chromium could not write {path}")
    driver.set_window_size(WINDOW_WIDTH, WINDOW_HEIGHT)
    return path


# ---------------------------------------------------------------------------------------------
# JupyterLab in the page

def open_lab(driver: webdriver.Chrome, lab: JupyterLab, timeout: float = 60) -> None:
    """Load JupyterLab (default workspace) and wait until it has restored its layout."""
    driver.get(lab.lab_url)
    wait_for(driver, "return !!window.jupyterapp", timeout, "window.jupyterapp (JupyterLab loading)")
    driver.execute_async_script("const done = arguments[0]; window.jupyterapp.restored.then(() => done());")


def toasts(driver: webdriver.Chrome) -> list[str]:
    """The text of every notification toast on screen (JupyterLab's news question is one)."""
    return driver.execute_script("return [...document.querySelectorAll('.Toastify__toast')].map(t => t.innerText)")


@dataclass(frozen=True)
class Output:
    """One output of a cell as the page shows it."""

    mime_type: str  # the renderer's: "application/vnd.jupyter.stdout", "...stderr", "text/html", "image/png", ...
    text: str  # the text a person reads (innerText)
    tables: int  # <table> elements in it
    image_widths: tuple[int, ...]  # naturalWidth of each <img> in it: 0 for one that did not load
    menus: int = 0  # <select> elements in it (ipywidgets' dropdowns)


@dataclass(frozen=True)
class Cell:
    """One cell of a notebook in JupyterLab, after it ran."""

    index: int
    cell_type: str  # "code", "markdown" or "raw"
    source: str
    prompt: str  # a code cell's input prompt: "[3]:" once run, "[*]:" while it runs, "[ ]:" never run
    section: str  # the latest markdown heading at or above it ("" before the first)
    outputs: tuple[Output, ...]
    errors: tuple[str, ...]  # "ename: evalue" of each error output

    @property
    def label(self) -> str:
        first_line = self.source.strip().splitlines()[0] if self.source.strip() else "(empty)"
        return f"cell {self.index} ({first_line[:70]})"

    @property
    def executed(self) -> bool:
        return re.fullmatch(r"\[\d+\]:", self.prompt) is not None


_PANEL = """
    const panelFor = path => [...window.jupyterapp.shell.widgets('main')]
      .find(w => w.context && w.context.path === path);
"""


def open_notebook(driver: webdriver.Chrome, path: str) -> None:
    """Open `path` (relative to the server's root) as a notebook, wait until its kernel session
    exists, make it the current tab and fold the file browser away."""
    error = driver.execute_async_script("""
        const [path, done] = arguments;
        window.jupyterapp.commands.execute('docmanager:open', {path, factory: 'Notebook'})
          .then(async panel => {
            await panel.context.ready;
            await panel.sessionContext.ready;
            window.jupyterapp.shell.activateById(panel.id);
            window.jupyterapp.shell.collapseLeft();
            done(null);
          })
          .catch(e => done(String(e)));""", path)
    if error:
        raise RuntimeError(f"JupyterLab could not open {path}: {error}")


def run_all_cells(driver: webdriver.Chrome, path: str, timeout: float) -> None:
    """Run every cell of the open notebook `path` (`notebook:run-all-cells`) and wait until it is
    done: the command has returned, the kernel is idle and no cell shows `[*]`. Raises
    TimeoutError naming the cell still running (or the kernel's status) after `timeout` seconds."""
    driver.execute_script(_PANEL + """
        const panel = panelFor(arguments[0]);
        window.jupyterapp.shell.activateById(panel.id);
        window.mnistlabRun = {done: false};
        window.jupyterapp.commands.execute('notebook:run-all-cells')
          .then(() => { window.mnistlabRun.done = true; })
          .catch(e => { window.mnistlabRun = {done: true, error: String(e)}; });""", path)
    state_script = _PANEL + """
        const panel = panelFor(arguments[0]);
        const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
        const running = panel.content.widgets
          .map((cell, index) => [index, cell])
          .filter(([, cell]) => cell.model.type === 'code'
                                && cell.node.querySelector('.jp-InputPrompt').textContent.includes('*'))
          .map(([index, cell]) =>
            `cell ${index} (${cell.model.sharedModel.getSource().trim().split('\\n')[0].slice(0, 70)})`);
        return {done: window.mnistlabRun.done, error: window.mnistlabRun.error || null,
                kernel: kernel ? kernel.status : 'no kernel', running};"""
    deadline = time.monotonic() + timeout
    while True:
        state = driver.execute_script(state_script, path)
        if state["error"]:
            raise RuntimeError(f"notebook:run-all-cells failed in {path}: {state['error']}")
        if state["done"] and state["kernel"] == "idle" and not state["running"]:
            break
        if time.monotonic() > deadline:
            what = state["running"][0] + " still running" if state["running"] else f"kernel {state['kernel']}"
            raise TimeoutError(f"{path}: {what} after {timeout:.0f} s")
        time.sleep(0.5)
    wait_for_images(driver)


def read_cells(driver: webdriver.Chrome, path: str) -> list[Cell]:
    """Every cell of the open notebook `path`: its prompt and what each of its outputs shows."""
    raw = driver.execute_script(_PANEL + """
        return panelFor(arguments[0]).content.widgets.map(cell => ({
          cell_type: cell.model.type,
          source: cell.model.sharedModel.getSource(),
          prompt: cell.model.type === 'code' ? cell.node.querySelector('.jp-InputPrompt').innerText.trim() : '',
          outputs: [...cell.node.querySelectorAll('.jp-OutputArea-output')].map(output => ({
            mime_type: output.dataset.mimeType || '',
            text: output.innerText,
            tables: output.querySelectorAll('table').length,
            image_widths: [...output.querySelectorAll('img')].map(img => img.naturalWidth),
            menus: output.querySelectorAll('select').length,
          })),
          errors: cell.model.type === 'code'
            ? cell.model.outputs.toJSON().filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`)
            : [],
        }));""", path)
    cells, section = [], ""
    for index, cell in enumerate(raw):
        if cell["cell_type"] == "markdown":
            headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", cell["source"], flags=re.MULTILINE)
            section = headings[-1] if headings else section
        outputs = tuple(Output(o["mime_type"], o["text"], o["tables"], tuple(o["image_widths"]), o["menus"])
                        for o in cell["outputs"])
        cells.append(Cell(index, cell["cell_type"], cell["source"], cell["prompt"], section, outputs,
                          tuple(cell["errors"])))
    return cells


def close_notebook(driver: webdriver.Chrome, path: str) -> None:
    """Shut the notebook's kernel down and close its tab (nothing asks to save: the test reads
    the page, not the file)."""
    driver.execute_async_script(_PANEL + """
        const [path, done] = arguments;
        const panel = panelFor(path);
        if (!panel) { done(); return; }
        panel.sessionContext.shutdown().catch(() => {}).then(() => {
          panel.context.model.dirty = false;  // no "save changes?" question, no unload warning
          panel.close();
          done();
        });""",
                                path)


def run_notebook(driver: webdriver.Chrome, lab: JupyterLab, path: str, screenshot: str,
                 timeout: float = 300) -> list[Cell]:
    """Open JupyterLab, open the notebook `path` (relative to the server's root), run every cell,
    save a full-page screenshot as runs/screenshots/<screenshot>.png (also when the run fails or
    times out), read every cell, shut its kernel down. Returns the cells."""
    open_lab(driver, lab)
    open_notebook(driver, path)
    try:
        run_all_cells(driver, path, timeout)
    finally:
        try:
            save_screenshot(driver, screenshot)
            cells = read_cells(driver, path)
        finally:
            close_notebook(driver, path)
    return cells
