"""The OpenVINO backend against ONNX Runtime and LiteRT on the demo models (the real OpenVINO,
its CPU plugin): fp32 within 1e-4, int8 by top-1 agreement, OpenVINO IR, options, concurrent
calls, and the CLI."""

import json
import threading

import numpy as np
import pytest
from helpers import run_kit

import kit
from kit.core.errors import InputError, ModelFileError

pytest.importorskip("openvino", reason='needs OpenVINO: pip install "edge-inference-kit[openvino]"')


def held_out(digits, count=256):
    return np.load(digits.test)["x"][:count]


def outputs(path, x, runtime=None, **options):
    with kit.load(path, runtime=runtime, **options) as model:
        name = model.inputs[0].name
        return np.concatenate([model.run({name: x[i:i + 1]})[model.outputs[0].name] for i in range(len(x))])


@pytest.mark.parametrize("fixture", ["digits", "mobilenet"])
def test_fp32_onnx_matches_onnx_runtime(fixture, request):
    """Computed in f32 (not the bf16 the CPU plugin picks on a CPU with AVX512_BF16 or AMX)."""
    trained = request.getfixturevalue(fixture)
    x = held_out(trained, 64)
    ours, reference = outputs(trained.onnx, x, "openvino"), outputs(trained.onnx, x, "onnxruntime")
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=1e-4)


def test_int8_onnx_agrees_with_onnx_runtime(digits, tmp_path):
    """The kit's QDQ model: OpenVINO computes it in int8 itself; its rounding differs from ONNX
    Runtime's kernels, so the two are judged by top-1 agreement and accuracy, not bit equality."""
    from kit.export.quantize import quantize

    int8 = tmp_path / "digits.int8.onnx"
    quantize(digits.onnx, int8, calib=str(digits.calib))
    x, labels = held_out(digits), np.load(digits.test)["y"][:256]
    ours, reference = outputs(int8, x, "openvino").argmax(1), outputs(int8, x, "onnxruntime").argmax(1)
    assert (ours == reference).mean() >= 0.97
    fp32 = outputs(digits.onnx, x, "onnxruntime").argmax(1)
    assert (ours == labels).mean() >= (fp32 == labels).mean() - 0.03
    nan = x[:1].copy()
    nan[0, 0, 3, 3] = np.nan
    with kit.load(int8, runtime="openvino") as model, pytest.raises(
            InputError, match="holds 1 NaN or infinite value; this model computes in integers"):
        model.run({"input": nan})  # integers cannot hold it: refused, not answered with confidence


def test_nan_is_refused_where_openvino_would_hide_it(digits):
    """ONNX Runtime carries a NaN through the float CNN; OpenVINO's CPU kernels answer finite
    scores, so the kit refuses the input there rather than pass on a confident answer."""
    nan = held_out(digits, 1).copy()
    nan[0, 0, 3, 3] = np.nan
    with kit.load(digits.onnx, runtime="onnxruntime") as reference:
        assert np.isnan(reference.run({"input": nan})["output"]).all()
    with kit.load(digits.onnx, runtime="openvino") as model, pytest.raises(
            InputError, match="holds 1 NaN or infinite value; OpenVINO's kernels do not carry them through"):
        model.run({"input": nan})


def test_tflite_matches_litert(digits, digits_tflite):
    x = held_out(digits, 32)
    fp32 = digits_tflite["fp32"].path
    np.testing.assert_allclose(outputs(fp32, x, "openvino"), outputs(fp32, x, "tflite"), atol=1e-4, rtol=1e-4)


def test_openvino_ir_matches_its_onnx(digits, tmp_path):
    import openvino

    xml = tmp_path / "digits.xml"
    openvino.save_model(openvino.convert_model(str(digits.onnx)), str(xml), compress_to_fp16=False)
    x = held_out(digits, 16)
    assert kit.runtimes.registry.candidates(xml) == ["openvino"]
    np.testing.assert_allclose(outputs(xml, x), outputs(digits.onnx, x, "onnxruntime"), atol=1e-4, rtol=1e-4)
    xml.with_suffix(".bin").unlink()
    with pytest.raises(ModelFileError, match=r"digits.xml is OpenVINO IR, whose weights are missing: expected "
                                             r"digits.bin beside it"):
        kit.load(xml)


def test_options_and_what_it_reports(digits):
    with kit.load(digits.onnx, runtime="openvino", threads=2, hint="throughput", streams=2) as model:
        info = model.info
    assert (info["device"], info["hint"], info["threads"], info["streams"], info["precision"]) == \
        ("CPU", "throughput", 2, 2, "f32")
    with kit.load(digits.onnx, runtime="openvino", threads=1, streams=2) as model:
        assert model.info["streams"] == 1  # a stream needs a thread: OpenVINO lowered it, and info says so
    import openvino

    has_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    with kit.load(digits.onnx, runtime="openvino", precision="bf16") as model:
        assert model.info["precision"] == ("bf16" if has_bf16 else "f32")  # bf16 where the CPU has it
    with kit.load(digits.onnx, runtime="openvino", device="AUTO") as model:  # AUTO would pick bf16 or f16 itself
        np.testing.assert_allclose(model.run({"input": held_out(digits, 4)})["output"],
                                   outputs(digits.onnx, held_out(digits, 4), "onnxruntime"), atol=1e-4, rtol=1e-4)
    with pytest.raises(InputError, match=r"OpenVINO has no NPU device here \(available: CPU"):
        kit.load(digits.onnx, runtime="openvino", device="NPU")
    with pytest.raises(InputError, match=r"expected an OpenVINO device among CPU, GPU, NPU, AUTO .*found 'TPU'"):
        kit.load(digits.onnx, runtime="openvino", device="TPU")
    with pytest.raises(InputError, match="expected hint among latency, throughput, found 'fast'"):
        kit.load(digits.onnx, runtime="openvino", hint="fast")


def test_concurrent_calls_each_get_their_own_answer(digits):
    x = held_out(digits, 64)
    serial = outputs(digits.onnx, x, "openvino")
    with kit.load(digits.onnx, runtime="openvino", hint="throughput") as model:
        results = [None] * len(x)

        def work(start):
            for i in range(start, len(x), 4):
                results[i] = model.run({"input": x[i:i + 1]})["output"][0]

        threads = [threading.Thread(target=work, args=(start,)) for start in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    np.testing.assert_array_equal(np.stack(results), serial)


def test_the_cli_runs_and_lists_it(digits):
    ran = run_kit("run", digits.onnx, "--runtime", "openvino", "--random", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["runtime"]["runtime"] == "openvino"
    listed = {entry["name"]: entry for entry in json.loads(run_kit("runtimes", "--json").stdout)}
    assert listed["openvino"]["usable"] is True and listed["openvino"]["suffixes"] == [".xml"]
    assert listed["openvino"]["named_suffixes"] == [".onnx", ".tflite"]
    assert ".xml (.onnx .tflite with --runtime openvino)" in run_kit("runtimes").stdout


def test_a_full_int8_tflite_reads_as_on_litert(digits, digits_tflite):
    """The kit's names and real-valued inputs and outputs, as its TFLite runtime gives them (OpenVINO
    alone shows serving_default_args_0 and int8 tensors); outputs agree sample by sample."""
    path = digits_tflite["int8"].path
    with kit.load(path, runtime="openvino") as ours, kit.load(path, runtime="tflite") as reference:
        assert [(s.name, s.shape, s.dtype) for s in ours.inputs] == [(s.name, s.shape, s.dtype)
                                                                     for s in reference.inputs]
        assert [(s.name, s.dtype) for s in ours.outputs] == [(s.name, s.dtype) for s in reference.outputs]
        name, out = reference.inputs[0].name, reference.outputs[0].name
        x = held_out(digits, 128).transpose(0, 2, 3, 1)  # NHWC, as the int8 export takes images
        ovs = np.concatenate([ours.run({name: x[i:i + 1]})[out] for i in range(len(x))])
        lite = np.concatenate([reference.run({name: x[i:i + 1]})[out] for i in range(len(x))])
    with kit.load(path, runtime="tflite", raw=True) as raw:
        step = raw.outputs[0].scale  # one quantization step of the int8 output
    assert (ovs.argmax(1) == lite.argmax(1)).mean() >= 0.97
    assert np.abs(ovs - lite).max() <= 2 * step + 1e-6  # identical here; kernels may round a step apart

