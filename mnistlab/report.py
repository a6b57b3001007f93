"""`make report`: the executed comparison notebook as one self-contained HTML page, code hidden."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter


def render_report(notebook: str | os.PathLike, html: str | os.PathLike) -> Path:
    """Write `notebook` (executed) as HTML without its code cells and without stderr output
    (TensorFlow's start-up log lines), figures inlined. Raises FileNotFoundError naming the
    notebook and how to make it if it does not exist."""
    notebook, html = Path(notebook), Path(html)
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook} does not exist: run `make run-all` (or execute compare_runs.ipynb) first")
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    body, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    html.write_text(body, encoding="utf-8")
    return html
