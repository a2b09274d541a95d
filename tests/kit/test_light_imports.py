"""`import kit`, every kit.runtimes module and `kit --help` import no torch and no runtime library."""

import json
import subprocess
import sys

HEAVY = ["torch", "onnx", "onnxruntime", "onnxscript", "onnxslim", "cv2", "sklearn", "tensorflow",
         "ai_edge_litert", "tflite_runtime", "tensorrt", "tensorrt_rtx", "rich", "matplotlib", "pytest_benchmark",
         "litert_torch", "ai_edge_quantizer", "torchao", "cuda"]

PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def heavy_modules_after(body: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# Modules that import torch at the top on purpose (reference architectures).
TORCH_MODULES = {"kit.models", "kit.__main__"}  # and the one that runs the command


def test_import_kit_and_every_module_is_light():
    """Every module of every kit package (walked, so a new module is covered the day it lands)."""
    body = ("import importlib, pkgutil, kit\n"
            "from kit.runtimes import registry\n"
            "names = [m.name for m in pkgutil.walk_packages(kit.__path__, 'kit.')]\n"
            "names += [m.name for p in ('kit.export', 'kit.runtimes') "
            "for m in pkgutil.walk_packages(importlib.import_module(p).__path__, p + '.')]\n"
            f"[importlib.import_module(n) for n in names if n not in {TORCH_MODULES!r}]\n"
            "assert len(names) > 40, names\n"
            "[registry.get(n) for n in registry.known()]")
    assert heavy_modules_after(body) == []


def test_kit_help_is_light():
    body = ("from kit.cli import main\n"
            "for argv in (['--help'], *([c, '--help'] for c in ('export', 'run', 'quantize', 'compare', 'eval', "
            "'bench', 'build', 'check', 'inspect', 'runtimes', 'demo'))):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass")
    assert heavy_modules_after(body) == []
