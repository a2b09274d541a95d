"""Options every backend validates before any work (threads bounded by the machine's CPUs, option
types), and NaN/Inf refused by models that compute in integers."""

import numpy as np
import pytest
from helpers import run_kit
from kit.runtimes.base import THREADS_PER_CPU, cpu_count
from kit.runtimes.registry import get

import kit
from kit.core.errors import InputError


@pytest.mark.parametrize("backend", ["onnxruntime", "torch", "tflite", "edgetpu", "openvino"])
def test_threads_are_bounded_by_the_machine_for_every_backend(backend):
    cpus = cpu_count()
    model = {"onnxruntime": "m.onnx", "torch": "m.py:make", "tflite": "m.tflite", "edgetpu": "m_edgetpu.tflite",
             "openvino": "m.xml"}
    with pytest.raises(InputError, match=fr"expected threads from 0 to {THREADS_PER_CPU * cpus} \({THREADS_PER_CPU} "
                                         fr"per CPU; this machine gives the kit {cpus} CPUs?\), found 100000\. "
                                         fr"Use at most {cpus} \(one per CPU\)"):
        get(backend)(model[backend], threads=100_000)  # refused at construction, before any thread starts
    for bad in (-1, 2.5, "4", True):
        with pytest.raises(InputError, match="expected threads"):
            get(backend)(model[backend], threads=bad)
    assert get(backend)(model[backend], threads=np.int64(cpus)).options["threads"] == cpus


def test_the_cli_refuses_a_huge_thread_count_at_once(tiny_onnx):
    result = run_kit("run", tiny_onnx, "--random", "--threads", "100000")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"this machine gives the kit {cpu_count()} CPU" in " ".join(result.stderr.split())


@pytest.mark.parametrize("backend, options, message", [
    ("onnxruntime", {"optimization": 3}, r"expected optimization among disable, basic, extended, all, found 3"),
    ("onnxruntime", {"optimization": "max"}, r"expected optimization among .* found 'max'"),
    ("onnxruntime", {"providers": [1]}, r"expected providers as a list of provider names, found \[1\]"),
    ("onnxruntime", {"providers": 5}, r"expected providers as a list"),
    ("tflite", {"raw": "yes"}, r"expected raw as True or False, found 'yes' \(str\)"),
    ("edgetpu", {"device": 0}, r"expected device as a string, found 0 \(int\)"),
    ("openvino", {"streams": 100_000}, r"expected streams from 1 to \d+ \(4 per CPU"),
    ("openvino", {"streams": 0}, r"expected streams from 1 to \d+"),
    ("openvino", {"precision": "int4"}, r"expected precision among f32, bf16, f16, found 'int4'"),
    ("openvino", {"device": 0}, r"expected an OpenVINO device among CPU, GPU, NPU, AUTO .*found 0"),
    ("edgetpu", {"library": 1.5}, r"expected library as a string"),
])
def test_option_types_are_checked_before_loading(backend, options, message):
    with pytest.raises(InputError, match=message):
        get(backend)("model.onnx", **options)


def test_good_options_work(tiny_onnx, digits_tflite):
    with kit.load(tiny_onnx, providers="CPUExecutionProvider", threads=0, optimization="basic") as rt:
        assert rt.info["providers"] == ["CPUExecutionProvider"]
    with kit.load(digits_tflite["fp32"].path, threads=0) as rt:  # 0: the interpreter's default, as the CLI says
        assert rt.run({"input": np.zeros((1, 1, 8, 8), np.float32)})["output"].shape == (1, 10)


# ----- NaN and Inf: visible in a float model, refused by an integer one ---------------------------


def with_one(value, shape):
    array = np.zeros(shape, np.float32)
    array.flat[5] = value
    return array


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_an_int8_tflite_refuses_nan_and_inf(digits_tflite, value):
    with kit.load(digits_tflite["int8"].path) as rt:
        with pytest.raises(InputError, match=r"input 'input' holds 1 NaN or infinite value; this model computes in "
                                             r"integers.*Replace or drop them"):
            rt.run({"input": with_one(value, (1, 8, 8, 1))})
    with kit.load(digits_tflite["int8-dynamic"].path) as rt:  # int8 weights, activations quantized on the fly
        with pytest.raises(InputError, match="holds 1 NaN or infinite value"):
            rt.run({"input": with_one(value, (1, 1, 8, 8))})
    with kit.load(digits_tflite["fp32"].path) as rt:
        assert not np.isfinite(rt.run({"input": with_one(value, (1, 1, 8, 8))})["output"]).all()


def qdq_and_float_models(folder):
    """y = x @ W: as a float graph, as static QDQ (x quantized first) and as dynamic int8 (ORT's own)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import quantize_dynamic

    weights = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    io = ([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])])

    def save(name, nodes, initializers):
        model = helper.make_model(helper.make_graph(nodes, name, *io, initializers),
                                  opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, folder / f"{name}.onnx")
        return folder / f"{name}.onnx"

    float_model = save("float", [helper.make_node("MatMul", ["x", "W"], ["y"])], [numpy_helper.from_array(weights, "W")])
    qdq = save("qdq", [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                       helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
                       helper.make_node("MatMul", ["d", "W"], ["y"])],
               [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                numpy_helper.from_array(np.array(0, np.int8), "z"), numpy_helper.from_array(weights, "W")])
    quantize_dynamic(float_model, folder / "dynamic.onnx")
    return float_model, qdq, folder / "dynamic.onnx"


def test_onnx_int8_models_refuse_nan_and_inf(tmp_path):
    float_model, qdq, dynamic = qdq_and_float_models(tmp_path)
    x = np.array([[np.nan, 1.0, 2.0], [0.5, 1.0, 2.0]], np.float32)
    with kit.load(float_model) as rt:
        assert np.isnan(rt.run({"x": x})["y"][0]).all()  # the float model shows it
    for model in (qdq, dynamic):
        with kit.load(model) as rt:
            assert np.isfinite(rt.run({"x": x[1:]})["y"]).all()  # finite inputs run as before
            with pytest.raises(InputError, match="input 'x' holds 1 NaN or infinite value"):
                rt.run({"x": x})
            with pytest.raises(InputError, match="holds 2 NaN or infinite values"):
                rt.run({"x": np.array([[np.inf, -np.inf, 1.0]], np.float32)})
    np.save(tmp_path / "nan.npy", x)
    result = run_kit("run", qdq, "--input", tmp_path / "nan.npy")
    assert result.returncode == 2 and "input 'x' holds 1 NaN or infinite value" in " ".join(result.stderr.split())


def test_raw_integer_inputs_need_no_check(digits_tflite):
    with kit.load(digits_tflite["int8"].path, raw=True) as rt:
        assert rt.run({"input": np.zeros((1, 8, 8, 1), np.int8)})["output"].dtype == np.int8


def test_a_huge_random_batch_is_refused_before_allocating(tiny_onnx):
    result = run_kit("run", tiny_onnx, "--random", "1000000000000")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "random inputs 'x' [1000000000000, 3] would take" in " ".join(result.stderr.split())
