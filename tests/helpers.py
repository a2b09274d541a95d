"""Shared test helpers (tests/ is on sys.path through conftest.py's folder)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).parent
MODELS_FILE = TESTS / "models.py"

# The weights of the hand-built tiny ONNX model (conftest.tiny_onnx): y = x @ W + b, z = 2 x.
TINY_W = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
TINY_B = np.array([0.5, -1.0], dtype=np.float32)


def factory(name: str) -> str:
    """A factory reference into tests/models.py, the way a user writes one."""
    return f"{MODELS_FILE}:{name}"


def files_in(folder: Path) -> list[str]:
    """Every entry in a folder, hidden temporaries included."""
    return sorted(p.name for p in Path(folder).iterdir())


KIT = Path(sys.executable).with_name("kit")  # the console script pip installed beside this Python


def run_kit(*argv, columns: int = 80, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the real ``kit`` command, as a user types it, at a fixed terminal width."""
    env = {**os.environ, "COLUMNS": str(columns), **kwargs.pop("env", {})}
    return subprocess.run([str(KIT), *map(str, argv)], capture_output=True, text=True, env=env, timeout=timeout,
                          **kwargs)
