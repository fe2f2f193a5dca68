"""The README's commands and library example stay true; the links of README and docs/ resolve."""

import re
import runpy
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _library_blocks() -> list[str]:
    section = re.search(r"## Library use.*?\n(.*?)\n## ", README, re.S).group(1)
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _example(name: str) -> dict:
    return runpy.run_path(str(REPO / "examples" / f"{name}.py"), run_name="readme_test")


def test_library_examples_run_and_train_every_seed():
    """The README's two library snippets, each under 30 lines, run at toy size."""
    own_model, grid = _library_blocks()
    assert len(own_model.splitlines()) < 30 and len(grid.splitlines()) < 30
    (x_train, y_train), (x_test, y_test) = _example("linen_batchnorm")["digits"](300)
    namespace: dict = {"x_train": x_train, "y_train": y_train, "x_test": x_test[:100],
                       "y_test": y_test[:100]}
    assert "num_seeds=8, steps=600" in own_model and "eval_every=150" in own_model
    exec(own_model.replace("num_seeds=8, steps=600", "num_seeds=2, steps=60")
         .replace("eval_every=150", "eval_every=30"), namespace)
    assert namespace["result"].final("eval_accuracy").shape == (2,)
    assert np.all(namespace["result"].final("eval_accuracy") > 0.3)  # chance: 0.1
    assert namespace["ig"].shape == (2, 32, 8, 8, 1)
    assert namespace["agreement"]["cosine"].shape == (2, 2)

    grid_example = _example("learning_rate_grid")
    (x_train, y_train), (x_val, y_val) = grid_example["digits"]()
    # The second snippet continues the first: its imports, and a model and loss of the
    # reader's (the example's).
    namespace = {"negres": grid_example["negres"], "optax": grid_example["optax"],
                 "MLP": grid_example["MLP"], "loss": grid_example["loss"],
                 "x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}
    assert "num_seeds=8, steps=300" in grid and "eval_every=50" in grid
    exec(grid.replace("num_seeds=8, steps=300", "num_seeds=2, steps=60")
         .replace("eval_every=50", "eval_every=30"), namespace)
    assert namespace["accuracy"].shape == (4, 2)
    assert namespace["result"].curves["eval_accuracy"].shape == (4, 2, 2)


def test_ci_runs_the_readme_test_command():
    test_block = re.search(r"The tests .*?```bash\n(.*?)\n```", README, re.S).group(1)
    test_command = test_block.split("&&")[-1].strip()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert "pip install -r requirements.txt" in test_block


def test_ci_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")], check=True)


def test_readme_and_docs_links_resolve():
    """README stays a short front page; every relative link of it and of docs/ resolves."""
    assert len(README.splitlines()) < 250
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert len(pages) > 1
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            path = target.partition("#")[0]
            if path and not re.match(r"[a-z]+:", path):
                assert (page.parent / path).exists(), f"{page.name}: {target}"
