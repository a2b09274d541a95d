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


def test_import_kit_and_every_runtime_module_is_light():
    body = ("import kit, kit.runtimes, kit.runtimes.base, kit.runtimes.registry, kit.runtimes.ort, "
            "kit.runtimes.pytorch, kit.runtimes.tflite, kit.runtimes.edgetpu.runtime, kit.runtimes.tensorrt.runtime, kit.export, "
            "kit.export.onnx, kit.runtimes.tensorrt.build, "
            "kit.export.quantize, kit.check.layers, kit.export.tflite, kit.runtimes.edgetpu.check, kit.cli.main, "
            "kit.data.sources, kit.data.preprocess, kit.data.datasets, kit.check.metrics, kit.check.accuracy, kit.data.golden, kit.check.harness, kit.bench.driver, "
            "kit.bench.worker, kit.bench.report, kit.bench.stats, kit.core.environment, kit.bench.plugin, kit.data.feeds, kit.core.provenance\n"
            "from kit.runtimes import registry\n"
            "[registry.get(n) for n in registry.known()]")
    assert heavy_modules_after(body) == []


def test_kit_help_is_light():
    body = ("from kit.cli.main import main\n"
            "for argv in (['--help'], *([c, '--help'] for c in ('export', 'run', 'quantize', 'compare', 'eval', "
            "'bench', 'build', 'check', 'inspect', 'runtimes', 'demo'))):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass")
    assert heavy_modules_after(body) == []
