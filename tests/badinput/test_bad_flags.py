"""Flags: ranges checked, conflicting repeats refused, usage errors in the one-line form."""

import pytest
from badinput_cases import refused

M, S, A = "model.onnx", "scales.json", "art.dla"
FLAGS = {
    "--trt 99.9": (["check", M, "--trt", "99.9"], "TensorRT 99.9"),
    "--batch 0": (["profile", M, "--batch", "0"], "--batch"),
    "--batch 10^12": (["profile", M, "-b", str(10**12)], "--batch"),
    "--cores 0": (["profile", M, "--cores", "0"], "--cores"),
    "--precision int4": (["profile", M, "--precision", "int4"], "int4"),
    "run -n -1": (["run", A, "-d", "data.npz", "-n", "-1"], "--limit"),
    "accuracy -n -1": (["accuracy", M, "-s", S, "-d", "data.npz", "-n", "-1"], "--limit"),
    "fix -n -1": (["fix", M, "-o", "o.onnx", "-d", "data.npz", "-n", "-1"], "--limit"),
    "--percentile 0": (["calibrate", M, "-d", "data.npz", "-m", "percentile", "--percentile",
                        "0", "-o", "o.json"], "--percentile"),
    "--trt-version -5": (["calibrate", M, "-d", "data.npz", "--trt-version", "-5"],
                         "--trt-version"),
    "a node in --fp16-layers and --fallback-layers": (
        ["compile", M, "-t", "nv_small", "-s", S, "-o", "o.dla", "--fp16-layers", "conv1",
         "--fallback-layers", "relu1,conv1"], "both name conv1"),
    "--input-shape twice with two shapes": (
        ["check", M, "--input-shape", "x:1x3x16x16", "--input-shape", "x:1x3x32x32"],
        "given twice"),
    "--input-shape with a 2^40 dimension": (["check", M, "--input-shape", f"1x3x{2**40}x16"],
                                            "--input-shape"),
    "run --device tpu": (["run", A, "-d", "data.npz", "--device", "tpu"], "tpu"),
    "trace run --device tpu": (["trace", "run", "trace/t.cfg", "--device", "tpu"], "tpu"),
    "run --compare a model of other outputs": (["run", A, "-d", "data.npz", "--compare",
                                                "other.onnx"], "--compare"),
    "run -d a garbage .npy": (["run", A, "-d", "bad.npy"], "bad.npy"),
    "compile --format unknown": (["compile", M, "-t", "nv_small", "-s", S, "-o", "o.x",
                                  "--format", "plan"], "--format 'plan'"),
    "compile --format loadable for a Jetson": (["compile", M, "-t", "orin", "-s", S, "-o",
                                                "o.nvdla", "--format", "loadable"], "loadables"),
    "compile --format loadable without scales": (["compile", M, "-t", "nv_small", "-o",
                                                  "o.nvdla", "--format", "loadable"], "--scales"),
    "an unknown flag": (["check", M, "--frobnicate"], "No such option: --frobnicate"),
    "a missing argument": (["check"], "Missing argument"),
    "a flag without its value": (["check", M, "--target"], "requires an argument"),
    "a required option missing": (["fix", M, "--random"], "--output"),
    "a number that is none": (["profile", M, "--batch", "two"], "--batch"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_a_bad_flag_is_refused_in_one_line(work, capsys, name):
    from badinput_cases import conv_model

    (work / "other.onnx").write_bytes(conv_model(outs=["y"]).SerializeToString())
    (work / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    argv, needle = FLAGS[name]
    refused([*argv, "-q"] if argv[-1] != "--target" else argv, capsys, needle)


def test_the_same_input_shape_twice_is_fine(work, capsys):
    from dlakit.cli import main

    assert main(["check", M, "--input-shape", "x:1x3x16x16", "--input-shape", "x:1x3x16x16",
                 "-q"]) == 0  # fmt: skip
