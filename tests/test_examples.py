"""Every numbered example runs from a clean folder and prints what it promises."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example, tmp_path):
    result = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    differences = [float(line.rsplit("=", 1)[1]) for line in result.stdout.splitlines() if "max |" in line]
    assert differences and max(differences) < 1e-4, result.stdout
