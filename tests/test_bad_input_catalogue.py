"""The bad input users really give, through the real `kit` command: every case exits with the
right code and one `error:` line that says what was expected, what was found and what to do,
with no traceback and no temporary path, and leaves every file as it was.

The cases run once per session, a few processes at a time, each in a folder of its own (its
working directory and its TMPDIR, both checked empty afterwards); the shared inputs are
snapshotted (names, sizes, modes, times, contents, link targets) before and after.
Interrupts are in test_interrupts_catalogue.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import KIT, MODELS_FILE

# (id, arguments, exit code, what the error line must say). In the arguments: {i} the shared
# inputs folder, {o} the case's own folder, {f} a factory file, {m} tests/models.py, {conv} an
# exported conv net with recorded preprocessing, {t}/{t8} the digits CNN as fp32/int8 TFLite.
CASES = [
    # ----- kit run: model files ------------------------------------------------------------------
    ("run-missing-model", "run {i}/absent.onnx --random", 2, r"model file .*absent\.onnx does not exist"),
    ("run-text-onnx", "run {i}/text.onnx --random", 2, r"could not load .*text\.onnx.*Protobuf parsing failed"),
    ("run-empty-onnx", "run {i}/empty.onnx --random", 2, r"could not load .*empty\.onnx.*No graph"),
    ("run-truncated-onnx", "run {i}/truncated.onnx --random", 2, r"could not load .*truncated\.onnx"),
    ("run-text-tflite", "run {i}/text.tflite --random", 2, r"could not load .*text\.tflite.*not a valid Flatbuffer"),
    ("run-empty-tflite", "run {i}/empty.tflite --random", 2, r"could not load .*empty\.tflite"),
    ("run-text-engine", "run {i}/text.engine --random", 2, r"needs one of the runtimes tensorrt, and none is usable"),
    ("run-text-pt", "run {i}/text.pt --random --input-shape 1x3", 2, r"text\.pt is not a PyTorch model file"),
    ("run-text-pt2", "run {i}/text.pt2 --random", 2, r"text\.pt2 is not a torch\.export program"),
    ("run-pickled-pt", "run {i}/pickled.pt --random --input-shape 1x3", 2,
     r"pickled\.pt is a pickled Python object.*pass --allow-pickle"),
    ("run-crafted-pt2", "run {i}/crafted.pt2 --random", 2, r"crafted\.pt2 .*pickled Python objects"),
    ("run-dangling-symlink", "run {i}/dangling.onnx --random", 2, r"model file .*dangling\.onnx does not exist"),
    ("run-folder-as-model", "run {i}/images --random", 2, r"no runtime opens .*images; expected one of the suffixes"),
    ("run-unknown-suffix", "run {i}/models.py --random", 2, r"no runtime opens .*models\.py"),
    ("run-unknown-runtime", "run {i}/tiny.onnx --random --runtime nosuch", 2,
     r"expected a runtime among .*; found 'nosuch'\. Run `kit runtimes`"),
    ("run-wrong-runtime", "run {i}/tiny.onnx --random --runtime tflite", 2, r"tflite could not load .*tiny\.onnx"),
    # ----- kit run: options ---------------------------------------------------------------------
    ("run-unknown-option", "run {i}/tiny.onnx --random --frobnicate", 2, r"unrecognized arguments: --frobnicate"),
    ("run-no-feed", "run {i}/tiny.onnx", 2, r"one of the arguments --input --image --source --random is required"),
    ("run-two-feeds", "run {i}/tiny.onnx --random --input {i}/x.npy", 2, r"--input: not allowed with argument"),
    ("run-threads-huge", "run {i}/tiny.onnx --random --threads 100000", 2,
     r"expected threads from 0 to \d+ \(4 per CPU; .*\), found 100000"),
    ("run-threads-negative", "run {i}/tiny.onnx --random --threads -1", 2, r"expected threads from 0 to \d+"),
    ("run-threads-text", "run {i}/tiny.onnx --random --threads many", 2, r"expected a whole number, found 'many'"),
    ("run-random-huge", "run {i}/tiny.onnx --random 100000000000000", 2,
     r"random inputs 'x' \[100000000000000, 3\] would take .* GB, more than the .* of memory available here"),
    ("run-random-zero", "run {i}/tiny.onnx --random 0", 2, r"--random: expected a whole number >= 1, found '0'"),
    ("run-seed-text", "run {i}/tiny.onnx --random --seed x", 2, r"--seed: expected a whole number >= 0, found 'x'"),
    ("run-optimization-bad", "run {i}/tiny.onnx --random --optimization max", 2, r"invalid choice: 'max'"),
    ("run-weights-for-onnx", "run {i}/tiny.onnx --random --weights {i}/weights.pt", 2,
     r"--weights and --allow-pickle apply to PyTorch sources; .*tiny\.onnx is not opened by the torch runtime"),
    ("run-preprocess-without-image", "run {i}/tiny.onnx --random --preprocess size=8", 2,
     r"--preprocess describes how an image becomes the model's input; found no --image"),
    ("run-preprocess-over-recorded", "run {conv} --image {i}/digit.png --preprocess size=8", 2,
     r"records its own preprocessing"),
    # ----- kit run: input files -------------------------------------------------------------------
    ("run-input-missing", "run {i}/tiny.onnx --input {i}/absent.npy", 2, r"input file .*absent\.npy does not exist"),
    ("run-input-typo-name", "run {i}/tiny.onnx --input nope={i}/x.npy", 2,
     r"the model has no input named 'nope' \(its inputs: x\)"),
    ("run-input-batch0", "run {i}/tiny.onnx --input {i}/batch0.npy", 2, r"batch0\.npy holds an empty array"),
    ("run-input-empty-npy", "run {i}/tiny.onnx --input {i}/empty.npy", 2,
     r"could not read .*empty\.npy as a numpy \.npy file"),
    ("run-input-text-npy", "run {i}/tiny.onnx --input {i}/text.npy", 2, r"text\.npy holds Python objects"),
    ("run-input-empty-npz", "run {i}/tiny.onnx --input {i}/empty.npz", 2, r"empty\.npz holds no arrays"),
    ("run-input-text-npz", "run {i}/tiny.onnx --input {i}/text.npz", 2, r"could not read .*text\.npz as a numpy \.npz"),
    ("run-input-object-npz", "run {i}/tiny.onnx --input {i}/object.npz", 2,
     r"object\.npz \(array x\) holds Python objects \(dtype object\); .*never unpickles"),
    ("run-input-wrong-shape", "run {i}/tiny.onnx --input {i}/wrong_shape.npy", 2,
     r"input 'x' float32\[batch,3\] expected shape \[batch,3\], found \[10, 4\]"),
    ("run-input-wrong-rank", "run {i}/tiny.onnx --input {i}/wrong_rank.npy", 2, r"found \[10, 3, 1\]"),
    ("run-input-strings", "run {i}/tiny.onnx --input {i}/strings.npy", 2, r"expected dtype float32, found str"),
    ("run-input-wrong-key", "run {i}/tiny.onnx --input {i}/wrong_key.npz", 2,
     r"expected the inputs 'x' float32\[batch,3\]; found images"),
    ("run-image-missing", "run {conv} --image {i}/absent.png", 2, r"absent\.png"),
    ("run-image-not-an-image", "run {conv} --image {i}/images/not_an_image.png", 2, r"not_an_image\.png"),
    ("run-image-on-2d-model", "run {i}/tiny.onnx --image {i}/digit.png", 2,
     r"image preprocessing needs a 4-D input"),
    ("run-tflite-wrong-shape", "run {t} --input {i}/x.npy", 2, r"expected shape \[1,1,8,8\], found \[10, 3\]"),
    ("run-int8-nan", "run {t8} --input {i}/nan_digit.npy", 2,
     r"64 NaN or infinite values; this model computes in integers"),
    ("run-int8-inf", "run {t8} --input {i}/inf_digit.npy", 2, r"64 NaN or infinite values"),
    # ----- kit run: outputs -----------------------------------------------------------------------
    ("run-out-is-input", "run {i}/tiny.onnx --input {i}/data.npz -o {i}/data.npz", 2,
     r"output .*data\.npz is the same file as the input .*data\.npz"),
    ("run-out-symlink-to-input", "run {i}/tiny.onnx --input {i}/data.npz -o {i}/link.npz", 2,
     r"link\.npz is the same file as the input"),
    ("run-out-hardlink-to-input", "run {i}/tiny.onnx --input {i}/data.npz -o {i}/hard.npz", 2,
     r"hard\.npz is the same file as the input"),
    ("run-out-wrong-suffix", "run {i}/tiny.onnx --random -o {o}/out.txt", 2,
     r"expected an output path ending in \.npz, found .*out\.txt"),
    ("run-out-missing-folder", "run {i}/tiny.onnx --random -o {o}/no/such/out.npz", 2,
     r"the folder for the output .*out\.npz does not exist"),
    ("run-out-unwritable", "run {i}/tiny.onnx --random -o /proc/kit-out.npz", 2, r"cannot write /proc/kit-out\.npz"),
    ("run-out-is-folder", "run {i}/tiny.onnx --random -o {i}/folder.npz", 2, r"folder\.npz is a folder"),
    # ----- kit run: factories ---------------------------------------------------------------------
    ("run-factory-raises", "run {f}:broken --random --input-shape 1x3", 2,
     r"calling the factory .*:broken raised RuntimeError: no config"),
    ("run-factory-returns-int", "run {f}:not_a_module --random --input-shape 1x3", 2,
     r"returned int; expected a torch\.nn\.Module"),
    ("run-factory-missing-function", "run {f}:nosuch --random --input-shape 1x3", 2,
     r"expected a function 'nosuch' in .*models\.py, found nothing"),
    ("run-factory-missing-file", "run {i}/absent.py:make --random --input-shape 1x3", 2,
     r"factory file .*absent\.py does not exist"),
    ("run-factory-no-shape", "run {f}:make --random", 2, r"expected --input-shape for the input 'input'"),
    ("run-factory-bad-shape", "run {f}:make --random --input-shape 1xQ", 2,
     r"expected a shape like 1x3x224x224 .*found '1xQ'"),
    ("run-factory-wrong-weights", "run {f}:make --random --input-shape 1x3 --weights {i}/wrong_weights.pt", 2,
     r"weights .*wrong_weights\.pt do not fit .*size mismatch"),
    ("run-factory-pickled-weights", "run {f}:make --random --input-shape 1x3 --weights {i}/pickled.pt", 2,
     r"weights file .*pickled\.pt holds Python objects beyond tensors"),
    ("run-factory-missing-weights", "run {f}:make --random --input-shape 1x3 --weights {i}/absent.pt", 2,
     r"weights file .*absent\.pt does not exist"),
    # ----- kit export ----------------------------------------------------------------------------
    ("export-no-shape", "export {f}:make -o {o}/m.onnx", 2, r"expected --input-shape for the input 'input'"),
    ("export-zero-dim", "export {f}:make --input-shape 1x0x3 -o {o}/m.onnx", 2, r"found '1x0x3'"),
    ("export-huge-shape", "export {f}:make --input-shape 100000x100000x100000 -o {o}/m.onnx", 2,
     r"under 2\*\*31 elements"),
    ("export-unknown-input-names", "export {f}:make --input-shape a=1x3 --input-shape b=1x3 -o {o}/m.onnx", 2,
     r"takes the inputs input; --input-shape gave a, b"),
    ("export-bad-dtype", "export {f}:make --input-shape 1x3:complex64 -o {o}/m.onnx", 2,
     r"expected a dtype among .*found 'complex64'"),
    ("export-text-pt", "export {i}/text.pt --input-shape 1x3 -o {o}/m.onnx", 2, r"text\.pt is not a PyTorch model"),
    ("export-text-pt2", "export {i}/text.pt2 -o {o}/m.onnx", 2, r"text\.pt2 is not a torch\.export program"),
    ("export-crafted-pt2", "export {i}/crafted.pt2 -o {o}/m.onnx", 2, r"crafted\.pt2 .*pickled Python objects"),
    ("export-pickled-pt", "export {i}/pickled.pt --input-shape 1x3 -o {o}/m.onnx", 2,
     r"pickled\.pt is a pickled Python object"),
    ("export-state-dict-as-model", "export {i}/weights.pt --input-shape 1x3 -o {o}/m.onnx", 2,
     r"weights\.pt holds weights only \(a state_dict\), not a model"),
    ("export-missing-source", "export {i}/absent.pt --input-shape 1x3 -o {o}/m.onnx", 2,
     r"model source .*absent\.pt does not exist"),
    ("export-factory-raises", "export {f}:broken --input-shape 1x3 -o {o}/m.onnx", 2, r"raised RuntimeError"),
    ("run-negative-seed", "run {m}:make_linear --input-shape 1x20 --random --seed -1", 2,
     r"argument --seed: expected a whole number >= 0, found '-1'"),
    ("export-bad-suffix", "export {f}:make --input-shape 1x3 -o {o}/m.txt", 2,
     r"expected an output path ending in \.onnx"),
    ("export-out-links-to-weights", "export {f}:make --input-shape 1x3 --weights {i}/weights.pt -o {i}/weights.onnx",
     2, r"weights\.onnx is the same file as the input .*weights\.pt"),
    ("export-out-missing-folder", "export {f}:make --input-shape 1x3 -o {o}/no/m.onnx", 2,
     r"the folder for the output .* does not exist"),
    ("export-opset-zero", "export {f}:make --input-shape 1x3 --opset 0 -o {o}/m.onnx", 2,
     r"--opset: expected a whole number >= 1"),
    ("export-opset-huge", "export {f}:make --input-shape 1x3 --opset 99 -o {o}/m.onnx", 2,
     r"expected --opset between 7 and \d+"),
    ("export-atol-negative", "export {f}:make --input-shape 1x3 --atol -1 -o {o}/m.onnx", 2,
     r"--atol: expected a finite number >= 0"),
    ("export-atol-nan", "export {f}:make --input-shape 1x3 --atol nan -o {o}/m.onnx", 2, r"found 'nan'"),
    ("export-dynamic-bad-axis", "export {f}:make --input-shape 1x3 --dynamic 5=width -o {o}/m.onnx", 2,
     r"names axis 5, but input has rank 2"),
    ("export-static-and-dynamic", "export {f}:make --input-shape 1x3 --static --dynamic 0=b -o {o}/m.onnx", 2,
     r"--static fixes the batch axis, but --dynamic makes axis 0 dynamic"),
    ("export-preprocess-size0", "export {m}:make_conv --input-shape 1x3x8x8 --preprocess size=0 -o {o}/m.onnx", 2,
     r"size"),
    ("export-preprocess-huge", "export {m}:make_conv --input-shape 1x3x8x8 --preprocess size=100000 -o {o}/m.onnx",
     2, r"8192"),
    ("export-preprocess-unknown-key", "export {m}:make_conv --input-shape 1x3x8x8 --preprocess colour=rgb "
     "-o {o}/m.onnx", 2, r"colour"),
    ("export-preprocess-bad-mean", "export {m}:make_conv --input-shape 1x3x8x8 --preprocess mean=0.5/0.5 "
     "-o {o}/m.onnx", 2, r"mean"),
    ("export-precision-for-onnx", "export {f}:make --input-shape 1x3 --precision int8 -o {o}/m.onnx", 2,
     r"--precision, --calib, --layout and --eval apply to --format tflite"),
    ("export-tflite-int8-no-calib", "export {f}:make --input-shape 1x3 --layout nchw --precision int8 "
     "-o {o}/m.tflite", 2, r"full-integer int8 needs calibration data; found no --calib"),
    ("export-tflite-calib-wrong-shape", "export {f}:make --input-shape 1x3 --layout nchw --precision int8 "
     "--calib {i}/wrong_shape.npy -o {o}/m.tflite", 2, r"wrong_shape\.npy .*expected shape"),
    ("export-tflite-calib-objects", "export {f}:make --input-shape 1x3 --layout nchw --precision int8 "
     "--calib {i}/object.npz -o {o}/m.tflite", 2, r"holds Python objects"),
    ("export-tflite-calib-nan", "export {f}:make --input-shape 1x3 --layout nchw --precision int8 "
     "--calib {i}/nan.npy -o {o}/m.tflite", 2, r"NaN or Inf"),
    ("export-tflite-opset", "export {f}:make --input-shape 1x3 --opset 13 -o {o}/m.tflite", 2,
     r"--opset, --simplify, --dynamic, --static and --exporter apply to ONNX"),
    ("export-tflite-nhwc-on-2d", "export {f}:make --input-shape 1x3 --layout nhwc -o {o}/m.tflite", 2,
     r"--layout nhwc needs a 4-D"),
    ("export-tflite-eval-no-labels", "export {f}:make --input-shape 1x3 --eval {i}/no_labels.npz -o {o}/m.tflite",
     2, r"no_labels\.npz has no labels"),
    ("export-unknown-format", "export {f}:make --input-shape 1x3 --format coreml -o {o}/m.onnx", 2,
     r"invalid choice: 'coreml'"),
    # ----- kit quantize --------------------------------------------------------------------------
    ("quantize-missing", "quantize {i}/absent.onnx -o {o}/q.onnx --calib {i}/x.npy", 2, r"absent\.onnx does not exist"),
    ("quantize-text", "quantize {i}/text.onnx -o {o}/q.onnx --calib {i}/x.npy", 2, r"text\.onnx is not a readable"),
    ("quantize-empty", "quantize {i}/empty.onnx -o {o}/q.onnx --calib {i}/x.npy", 2,
     r"empty\.onnx holds no ONNX graph"),
    ("quantize-truncated", "quantize {i}/truncated.onnx -o {o}/q.onnx --calib {i}/x.npy", 2,
     r"truncated\.onnx is not a readable ONNX model"),
    ("quantize-tflite", "quantize {t} -o {o}/q.onnx --calib {i}/x.npy", 2,
     r"expected the input model to be an \.onnx file"),
    ("quantize-out-is-input", "quantize {i}/tiny.onnx -o {i}/tiny.onnx --calib {i}/x.npy", 2,
     r"tiny\.onnx is the same file as the input"),
    ("quantize-out-symlink-to-input", "quantize {i}/tiny.onnx -o {i}/link.onnx --calib {i}/x.npy", 2,
     r"link\.onnx is the same file as the input .*tiny\.onnx \(through a link\)"),
    ("quantize-out-wrong-suffix", "quantize {i}/tiny.onnx -o {o}/q.tflite --calib {i}/x.npy", 2,
     r"expected the output to be an \.onnx file"),
    ("quantize-no-calib", "quantize {i}/tiny.onnx -o {o}/q.onnx", 2, r"static int8 needs calibration data"),
    ("quantize-calib-missing", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/absent.npy", 2,
     r"data .*absent\.npy does not exist"),
    ("quantize-calib-wrong-shape", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/wrong_shape.npy", 2,
     r"expected shape \[batch,3\], found \[1, 4\]"),
    ("quantize-calib-batch0", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/batch0.npy", 2,
     r"batch0\.npy holds no samples"),
    ("quantize-calib-objects", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/object.npz", 2,
     r"holds Python objects"),
    ("quantize-calib-text", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/text.npz", 2,
     r"could not read .*text\.npz"),
    ("quantize-calib-nan", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/nan.npy", 2,
     r"nan\.npy holds 30 NaN or Inf values in input 'x'"),
    ("quantize-calib-random-huge", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib random:99999999999999", 2,
     r"expected random:N with N from 1 to 1,000,000"),
    ("quantize-calib-limit-zero", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/x.npy --calib-limit 0", 2,
     r"expected --calib-limit >= 1, found 0"),
    ("quantize-calib-empty-folder", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/noimages", 2,
     r"found no images"),
    ("quantize-bad-precision", "quantize {i}/tiny.onnx -o {o}/q.onnx --precision int4", 2, r"invalid choice: 'int4'"),
    ("quantize-budget-without-eval", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/x.npy --max-drop 0.01", 2,
     r"an accuracy budget needs both --max-drop/--min-ratio and --eval"),
    ("quantize-budget-out-of-range", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/x.npy --max-drop 2 "
     "--eval {i}/data.npz", 2, r"--max-drop: expected a number from 0 to 1"),
    ("quantize-budget-fp16", "quantize {i}/tiny.onnx -o {o}/q.onnx --precision fp16 --max-drop 0.01 "
     "--eval {i}/data.npz", 2, r"the accuracy budget applies to static int8"),
    ("quantize-eval-float-labels", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/x.npy --max-drop 0.01 "
     "--eval {i}/float_labels.npz", 2, r"expected labels in .* as a 1-D array of class indices"),
    ("quantize-exclude-unknown", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/x.npy --exclude no_such_node", 2,
     r"--exclude names no_such_node, which the graph does not have"),
    ("quantize-preprocess-for-arrays", "quantize {i}/tiny.onnx -o {o}/q.onnx --calib {i}/x.npy --preprocess size=8",
     2, r"x\.npy is not a folder of images"),
    # ----- kit compare ---------------------------------------------------------------------------
    ("compare-one-model", "compare {i}/tiny.onnx", 2, r"expected two models \(reference, candidate\); found 1"),
    ("compare-three-models", "compare {i}/tiny.onnx {i}/tiny.onnx {i}/tiny.onnx", 2, r"found 3"),
    ("compare-text-candidate", "compare {i}/tiny.onnx {i}/text.onnx", 2, r"text\.onnx is not a readable ONNX model"),
    ("compare-missing-candidate", "compare {i}/tiny.onnx {i}/absent.onnx", 2, r"absent\.onnx does not exist"),
    ("compare-random-huge", "compare {i}/tiny.onnx {i}/tiny.onnx --data random:99999999999999", 2,
     r"expected random:N with N from 1 to 1,000,000"),
    ("compare-data-and-random", "compare {i}/tiny.onnx {i}/tiny.onnx --data {i}/x.npy --random 4", 2,
     r"give --data or --random, not both"),
    ("compare-data-wrong-shape", "compare {i}/tiny.onnx {i}/tiny.onnx --data {i}/wrong_shape.npy", 2,
     r"expected shape \[batch,3\]"),
    ("compare-data-objects", "compare {i}/tiny.onnx {i}/tiny.onnx --data {i}/object.npz", 2, r"Python objects"),
    ("compare-data-batch0", "compare {i}/tiny.onnx {i}/tiny.onnx --data {i}/batch0.npy", 2, r"holds no samples"),
    ("compare-bad-atol", "compare {i}/tiny.onnx {i}/tiny.onnx --atol y=abc", 2,
     r"expected a tolerance like 1e-3 or OUTPUT=1e-3"),
    ("compare-golden-missing", "compare {i}/tiny.onnx --golden {i}/absent.npz", 2,
     r"golden file .*absent\.npz does not exist"),
    ("compare-golden-not-golden", "compare {i}/tiny.onnx --golden {i}/data.npz", 2,
     r"data\.npz is not a golden file"),
    ("compare-save-golden-over-data", "compare {i}/tiny.onnx {i}/tiny.onnx --data {i}/data.npz "
     "--save-golden {i}/data.npz", 2, r"data\.npz is the same file as the input"),
    ("compare-layers-tflite", "compare {t} {t} --layers", 2, r"--layers compares ONNX graphs"),
    ("compare-layers-float", "compare {i}/tiny.onnx {i}/tiny.onnx --layers", 2,
     r"--layers needs a QDQ-quantized candidate"),
    ("compare-weights-for-onnx", "compare {i}/tiny.onnx {i}/tiny.onnx --weights {i}/weights.pt", 2,
     r"apply to PyTorch sources"),
    ("compare-crafted-pt2", "compare {i}/crafted.pt2 {i}/tiny.onnx", 2, r"crafted\.pt2 .*pickled Python objects"),
    # ----- kit eval ------------------------------------------------------------------------------
    ("eval-no-data", "eval {i}/tiny.onnx", 2, r"the following arguments are required: --data"),
    ("eval-no-labels", "eval {i}/tiny.onnx --data {i}/no_labels.npz", 2, r"has no labels to evaluate against"),
    ("eval-float-labels", "eval {i}/tiny.onnx --data {i}/float_labels.npz", 2, r"1-D array of class indices"),
    ("eval-short-labels", "eval {i}/tiny.onnx --data {i}/short_labels.npz", 2,
     r"hold different sample counts \(\[9, 10\]\)"),
    ("eval-objects", "eval {i}/tiny.onnx --data {i}/object.npz", 2, r"Python objects"),
    ("eval-two-outputs", "eval {i}/tiny.onnx --data {i}/data.npz", 2,
     r"expected one \(samples, classes\) output to score; found 2 .*Name the classification output with "
     r"--output-name"),
    ("eval-unknown-output", "eval {i}/tiny.onnx --data {i}/data.npz --output-name nope", 2,
     r"expected an output named 'nope'; the model has y, z"),
    ("eval-budget-without-baseline", "eval {i}/tiny.onnx --data {i}/data.npz --output-name y --max-drop 0.01", 2,
     r"an accuracy budget needs --baseline"),
    ("eval-min-ratio-zero", "eval {i}/tiny.onnx --data {i}/data.npz --output-name y --baseline {i}/tiny.onnx "
     "--min-ratio 0", 2, r"expected a ratio above 0 and at most 1"),
    ("eval-text-baseline", "eval {i}/tiny.onnx --data {i}/data.npz --output-name y --baseline {i}/text.onnx", 2,
     r"text\.onnx"),
    ("eval-random-data", "eval {i}/tiny.onnx --data random:10 --output-name y", 2, r"random:10 has no labels"),
    ("eval-old-output-flag", "eval {i}/tiny.onnx --data {i}/data.npz --output y", 2,
     r"unrecognized arguments: --output y"),
    # ----- kit bench -----------------------------------------------------------------------------
    ("bench-missing-model", "bench {i}/absent.onnx", 2, r"absent\.onnx does not exist"),
    ("bench-text-model", "bench {i}/text.onnx --max-time 0.01", 2, r"benchmarking text\.onnx\[onnxruntime\] failed"),
    ("bench-max-time-huge", "bench {i}/tiny.onnx --max-time 1e308", 2, r"expected --max-time from 0 to 3600"),
    ("bench-max-time-nan", "bench {i}/tiny.onnx --max-time nan", 2, r"found 'nan'"),
    ("bench-batch-zero", "bench {i}/tiny.onnx --batch 0", 2, r"--batch: expected a whole number >= 1"),
    ("bench-batch-huge", "bench {i}/tiny.onnx --batch 1000000000000 --max-time 0.01", 2,
     r"would take .* GB, more than the .* of memory available here"),
    ("bench-threads-huge", "bench {i}/tiny.onnx --threads 100000", 2, r"expected threads from 0 to \d+"),
    ("bench-unknown-runtime", "bench {i}/tiny.onnx --runtime nosuch", 2, r"found 'nosuch'"),
    ("bench-save-json-over-model", "bench {i}/tiny.onnx --save-json {i}/tiny.onnx", 2,
     r"tiny\.onnx is the same file as the input"),
    ("bench-markdown-over-data", "bench {i}/tiny.onnx --data {i}/data.npz --markdown {i}/data.npz", 2,
     r"data\.npz is the same file as the input"),
    ("bench-compare-missing", "bench {i}/tiny.onnx --compare {i}/absent.json", 2,
     r"--compare file .*absent\.json does not exist"),
    ("bench-compare-not-json", "bench {i}/tiny.onnx --compare {i}/data.npz", 2,
     r"could not read .*data\.npz as a kit bench / pytest-benchmark JSON"),
    ("bench-compare-fail-alone", "bench {i}/tiny.onnx --compare-fail median:abc", 2,
     r"--compare-fail judges a comparison; no --compare"),
    ("bench-data-wrong-shape", "bench {i}/tiny.onnx --data {i}/wrong_shape.npy --max-time 0.01", 2,
     r"expected shape \[batch,3\]"),
    ("bench-old-json-file-flag", "bench {i}/tiny.onnx --json {o}/run.json", 2,
     r"run\.json does not exist\. Check the path\. \(--json is a switch; the report file is --save-json FILE\.\)"),
    ("bench-old-output-flag", "bench {i}/tiny.onnx --output y", 2, r"unrecognized arguments: --output y"),
    # ----- kit inspect, check, build, runtimes, demo, unknown commands -----------------------------
    ("inspect-missing", "inspect {i}/absent.onnx", 2, r"absent\.onnx does not exist"),
    ("inspect-text-onnx", "inspect {i}/text.onnx", 2, r"text\.onnx is not a readable ONNX model"),
    ("inspect-truncated-onnx", "inspect {i}/truncated.onnx", 2, r"truncated\.onnx is not a readable ONNX model"),
    ("inspect-text-tflite", "inspect {i}/text.tflite", 2, r"text\.tflite is not a readable TFLite flatbuffer"),
    ("inspect-bad-provenance", "inspect {i}/bad_provenance.onnx", 2, r"bad_provenance\.onnx.*kit\.provenance"),
    ("inspect-external-data-outside", "inspect {i}/outside.onnx", 2, r"outside the model's folder"),
    ("inspect-unknown-runtime", "inspect {i}/tiny.onnx --runtime nosuch", 2, r"found 'nosuch'"),
    ("check-unknown-target", "check coral {t}", 2, r"invalid choice: 'coral'"),
    ("check-text-tflite", "check edgetpu {i}/text.tflite", 2, r"text\.tflite is not a readable TFLite flatbuffer"),
    ("check-onnx", "check edgetpu {i}/tiny.onnx", 2, r"expected a \.tflite model"),
    ("check-missing", "check edgetpu {i}/absent.tflite", 2, r"absent\.tflite does not exist"),
    ("build-missing", "build {i}/absent.onnx -o {o}/m.engine", 2, r"absent\.onnx"),
    ("build-text", "build {i}/text.onnx -o {o}/m.engine --compute-capability SM86", 2,
     r"text\.onnx is not a readable ONNX model"),
    ("build-out-wrong-suffix", "build {i}/tiny.onnx -o {i}/tiny.onnx", 2, r"expected an output ending in \.engine"),
    ("build-timing-cache-not-a-cache", "build {i}/tiny.onnx -o {o}/m.engine --timing-cache {i}/data.npz "
     "--compute-capability SM86", 2, r"data\.npz exists and is not a tensorrt_rtx timing cache"),
    ("build-bad-compute-capability", "build {i}/tiny.onnx -o {o}/m.engine --compute-capability SM1", 2,
     r"expected a compute capability among"),
    ("runtimes-extra-argument", "runtimes tiny.onnx", 2, r"unrecognized arguments: tiny\.onnx"),
    ("demo-out-is-a-file", "demo -o {i}/tiny.onnx", 2, r"expected a folder for the demo's files"),
    ("unknown-command", "frobnicate", 2, r"unknown command 'frobnicate'"),
]

WORKERS = 3  # processes at a time: most cases wait on Python's start-up and imports


# ----- the shared inputs -------------------------------------------------------------------------

FACTORIES = '''import torch


def make():
    return torch.nn.Linear(3, 2)


def broken():
    raise RuntimeError("no config")


def not_a_module():
    return 42
'''


def _build_inputs(folder: Path, tiny_onnx: Path, conv_onnx: Path, tflite: dict) -> None:
    import cv2
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from kit.core import provenance

    shutil.copy(tiny_onnx, folder / "tiny.onnx")
    shutil.copy(conv_onnx, folder / "conv.onnx")
    shutil.copy(tflite["fp32"].path, folder / "digits.tflite")
    shutil.copy(tflite["int8"].path, folder / "digits.int8.tflite")
    raw = (folder / "tiny.onnx").read_bytes()
    (folder / "truncated.onnx").write_bytes(raw[: len(raw) // 2])
    for name in ("text.onnx", "text.tflite", "text.pt", "text.pt2", "text.engine", "text.npz", "text.npy"):
        (folder / name).write_text("this is not a model\n")
    for name in ("empty.onnx", "empty.tflite", "empty.npy"):
        (folder / name).write_bytes(b"")
    # Provenance that is not JSON, and external data that climbs out of the folder.
    model = onnx.load(str(folder / "tiny.onnx"))
    model.metadata_props.add(key=provenance.KEY, value="{not json")
    onnx.save(model, str(folder / "bad_provenance.onnx"))
    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    weight.external_data.add(key="location", value="../secret.bin")
    outside = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "outside",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], [weight]),
        opset_imports=[helper.make_opsetid("", 17)])
    (folder / "outside.onnx").write_bytes(outside.SerializeToString())

    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3)).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.savez(folder / "data.npz", x=x, y=np.arange(10) % 2)
    np.save(folder / "batch0.npy", np.zeros((0, 3), np.float32))
    np.savez(folder / "empty.npz")
    np.savez(folder / "object.npz", x=np.array([{"a": 1}] * 10, dtype=object))
    np.save(folder / "nan.npy", np.full((10, 3), np.nan, np.float32))
    np.save(folder / "nan_digit.npy", np.full((1, 8, 8, 1), np.nan, np.float32))
    np.save(folder / "inf_digit.npy", np.full((1, 8, 8, 1), np.inf, np.float32))
    np.save(folder / "wrong_shape.npy", np.zeros((10, 4), np.float32))
    np.save(folder / "wrong_rank.npy", np.zeros((10, 3, 1), np.float32))
    np.save(folder / "strings.npy", np.array([["a"] * 3] * 10))
    np.savez(folder / "float_labels.npz", x=x, y=np.linspace(0, 1, 10))
    np.savez(folder / "short_labels.npz", x=x, y=np.arange(9) % 2)
    np.savez(folder / "no_labels.npz", x=x)
    np.savez(folder / "wrong_key.npz", images=x)
    (folder / "images").mkdir()
    (folder / "images" / "not_an_image.png").write_text("text")
    (folder / "noimages").mkdir()
    (folder / "folder.npz").mkdir()
    cv2.imwrite(str(folder / "digit.png"), np.full((8, 8, 3), 120, np.uint8))
    (folder / "models.py").write_text(FACTORIES)
    torch.save(torch.nn.Linear(3, 2), folder / "pickled.pt")
    torch.save({"weight": torch.zeros(5, 5)}, folder / "wrong_weights.pt")
    torch.save(torch.nn.Linear(3, 2).state_dict(), folder / "weights.pt")
    _crafted_pt2(folder / "crafted.pt2", folder.parent / "pwned")
    os.symlink("tiny.onnx", folder / "link.onnx")
    os.symlink("data.npz", folder / "link.npz")
    os.symlink("weights.pt", folder / "weights.onnx")
    os.link(folder / "data.npz", folder / "hard.npz")
    os.symlink("missing.onnx", folder / "dangling.onnx")


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _crafted_pt2(path: Path, marker: Path) -> None:
    """A .pt2 whose sample inputs unpickle to a shell command (torch.export.load would run it;
    tests/kit/test_pt2.py proves that and covers the other ways a .pt2 runs code)."""
    import io

    import torch
    from torch.export.pt2_archive import PT2ArchiveReader, PT2ArchiveWriter

    plain = io.BytesIO()
    torch.export.save(torch.export.export(torch.nn.Linear(3, 2), (torch.randn(2, 3),)), plain)
    plain.seek(0)
    with PT2ArchiveReader(plain) as reader:
        records = {name: reader.read_bytes(name) for name in reader.get_file_names()}
    payload = io.BytesIO()
    torch.save(_Payload(marker), payload)
    records["data/sample_inputs/model.pt"] = payload.getvalue()
    with PT2ArchiveWriter(str(path)) as writer:
        for name, data in records.items():
            writer.write_bytes(name, data)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: kind, size, mode, modification time and content hash, or link target."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            entries[str(path)] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            entries[str(path)] = ("dir", stat.S_IMODE(info.st_mode))
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            entries[str(path)] = ("file", info.st_size, stat.S_IMODE(info.st_mode), info.st_mtime_ns, digest)
    return entries


# ----- running every case once ------------------------------------------------------------------


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory, tiny_onnx, conv_onnx, digits_tflite):
    root = tmp_path_factory.mktemp("catalogue")
    inputs = root / "in"
    inputs.mkdir()
    _build_inputs(inputs, tiny_onnx, conv_onnx, digits_tflite)
    before = snapshot(inputs)
    places = {"i": inputs, "f": inputs / "models.py", "m": MODELS_FILE, "conv": inputs / "conv.onnx",
              "t": inputs / "digits.tflite", "t8": inputs / "digits.int8.tflite"}

    def run(case):
        name, arguments = case[0], case[1]
        work, scratch = root / "cases" / name, root / "tmp" / name
        work.mkdir(parents=True)
        scratch.mkdir(parents=True)
        argv = shlex.split(arguments.format(o=work, **places))
        result = subprocess.run([str(KIT), *argv], capture_output=True, text=True, cwd=work, timeout=600,
                                env={**os.environ, "COLUMNS": "80", "TMPDIR": str(scratch)})
        return name, (result, sorted(p.name for p in work.iterdir()), sorted(p.name for p in scratch.iterdir()))

    with ThreadPoolExecutor(WORKERS) as pool:
        results = dict(pool.map(run, CASES))
    return {"results": results, "before": before, "after": snapshot(inputs), "inputs": inputs,
            "marker": root / "pwned"}


def test_the_catalogue_is_large_and_names_are_unique():
    assert len(CASES) >= 100
    assert len({case[0] for case in CASES}) == len(CASES)


def test_no_input_was_created_changed_or_removed(catalogue):
    assert catalogue["after"] == catalogue["before"]
    assert not catalogue["marker"].exists()  # the crafted .pt2 ran nothing


@pytest.mark.parametrize("name, arguments, code, says", CASES, ids=[case[0] for case in CASES])
def test_bad_input(catalogue, name, arguments, code, says):
    result, left_in_folder, left_in_tmp = catalogue["results"][name]
    lines = result.stderr.splitlines()
    assert result.returncode == code, result.stderr
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert all(line.startswith(("warning: ", "note: ")) for line in lines[:-1]), result.stderr
    error = lines[-1]
    assert re.search(says, error), error
    assert "Traceback" not in result.stderr and "rerun with --debug" not in error
    assert not re.search(r"\.tmp\b|/tmp[a-z0-9_]{6,}/", error), error  # no temporary path
    # ONNX Runtime keeps a session-id file (.ses) in TMPDIR on purpose; nothing else may stay.
    assert left_in_folder == [] and set(left_in_tmp) <= {".ses"}, (left_in_folder, left_in_tmp)
