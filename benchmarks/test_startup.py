"""Start-up cost: `import kit` and `kit --help` against a bare interpreter, in fresh processes."""

import subprocess
import sys

import pytest

TIMES: dict[str, float] = {}
COMMANDS = {
    "python": [sys.executable, "-c", "pass"],
    "import numpy": [sys.executable, "-c", "import numpy"],
    "import kit": [sys.executable, "-c", "import kit"],
    "kit --help": [sys.executable, "-m", "kit", "--help"],
}


@pytest.mark.parametrize("name", COMMANDS)
def test_start(benchmark, name):
    benchmark.group = "start-up (fresh process)"
    benchmark.pedantic(subprocess.run, args=(COMMANDS[name],), kwargs={"capture_output": True, "check": True},
                       rounds=15, warmup_rounds=2)
    if benchmark.stats is not None:
        TIMES[name] = benchmark.stats.stats.median


def test_start_up_report():
    if len(TIMES) < len(COMMANDS):
        pytest.skip("needs this run's timings (benchmarking enabled)")
    print(", ".join(f"{name} {seconds * 1e3:.0f} ms" for name, seconds in TIMES.items()))
    # `import kit` is numpy plus the kit's own modules: a torch or runtime import would multiply it.
    ratio = (TIMES["import kit"] - TIMES["python"]) / (TIMES["import numpy"] - TIMES["python"])
    print(f"import kit costs {ratio:.2f}x import numpy")
    assert ratio < 1.5
