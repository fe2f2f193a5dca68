"""The README's commands and library example stay true."""

import re
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_library_example_runs_and_trains_every_seed():
    code = re.search(r"## Library use\n\n```python\n(.*?)```", README, re.S).group(1)
    assert "num_seeds=64, steps=500" in code
    namespace: dict = {}
    exec(code.replace("num_seeds=64, steps=500", "num_seeds=3, steps=100"), namespace)
    accuracy = namespace["result"].curves["eval_accuracy"]
    assert accuracy.shape == (3, 2)
    assert np.all(accuracy[:, -1] > 0.85)


def test_ci_runs_the_readme_test_command():
    test_block = re.search(r"The tests .*?```bash\n(.*?)\n```", README, re.S).group(1)
    test_command = test_block.split("&&")[-1].strip()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert "pip install -r requirements.txt" in test_block


def test_ci_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")], check=True)
