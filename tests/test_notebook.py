"""examples/quickstart.ipynb runs top to bottom, at toy size, in a fresh Jupyter kernel.

The notebook reads ``NEGRES_QUICKSTART_TOY=1`` and shrinks every size (4 seeds, 20 steps);
the kernel inherits it, and the repository root on ``PYTHONPATH``, from this process's
environment. The kernel is this interpreter, through a kernel spec written to a temporary
``JUPYTER_PATH``, so a ``python3`` kernel spec elsewhere on the machine cannot shadow it.
"""

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"
KERNEL = "negres-quickstart-test"


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def printed(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")


def cell_with(notebook, source: str):
    """The one code cell whose source contains ``source``."""
    (cell,) = [cell for cell in code_cells(notebook) if source in cell.source]
    return cell


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_notebook_runs_top_to_bottom_at_toy_size(tmp_path, monkeypatch):
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "negres test kernel", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # no user startup files
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws
    monkeypatch.setenv("NEGRES_QUICKSTART_TOY", "1")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), *([path] if path else [])]))

    copy = tmp_path / "quickstart.ipynb"
    shutil.copy(NOTEBOOK, copy)
    notebook = nbformat.read(copy, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [out for cell in code_cells(notebook) for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert all(cell.execution_count is not None for cell in code_cells(notebook))
    assert "4 seeds x 20 steps" in printed(code_cells(notebook)[0])  # the toy sizes

    # The learning curves and the attribution figure are drawn inline.
    for source in ('result.curves[name]', "cross_seed_agreement("):
        cell = cell_with(notebook, source)
        assert any("image/png" in out.get("data", {}) for out in cell.outputs), source

    report = printed(cell_with(notebook, "result = train_seeds("))
    accuracies = re.search(r"test accuracy per seed: \[([^\]]*)\]", report).group(1).split()
    assert len(accuracies) == 4 and all(0.0 <= float(a) <= 1.0 for a in accuracies)
    # Accuracy's interval covers the test digits' sampling too, and says so.
    assert "(covers seeds and test examples)" in report
    assert "about these 100 test digits only" in report

    report = printed(cell_with(notebook, "cross_seed_agreement("))
    assert "attributions: (4, 4, 64)" in report
    agreement = float(re.search(r"mean cross-seed agreement[^:]*: (\S+) ±", report).group(1))
    assert -1.0 <= agreement <= 1.0
    low, high = map(float, re.search(r"95% interval \[(\S+), (\S+)\]", report).groups())
    assert low <= agreement <= high

    report = printed(cell_with(notebook, "negres.statistics.compare_examples("))
    verdict = re.search(r"^verdict: (\w+)$", report, re.MULTILINE).group(1)
    assert verdict in ("improved", "worse", "inconclusive")
    assert re.search(r"difference [+-]\d\.\d+, 95% interval \[[+-]\d\.\d+, [+-]\d\.\d+\]", report)
    # 4 seed pairs: the permutation test cannot reach p < 0.05, and the notebook says so.
    assert verdict == "inconclusive" and "no difference can be significant" in report
