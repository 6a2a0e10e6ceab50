"""Static int8 with NNCF's bias correction over deploytool's quantizer (deploytool/quantize/bias.py), on the trained
digits CNN calibrated on real digits:

- the program lowers fully delegated to XNNPACK and runs in the ExecuTorch runtime like the program it came from;
- its biases are not plain static's: the correction ran (NNCF skips a layer whose shift would be large against its
  bias: on this model, the three convs);
- NNCF's logs and progress bars stay off stdout, which is for results;
- an unknown NNCF range method is a config error naming the nearest one;
- without NNCF, the error says what to install, with exit code 3.
"""
from __future__ import annotations

import sys

import pytest
import torch

from deploytool.config import QuantConfig

CALIBRATION_SAMPLES = 64
HELD_OUT_SAMPLES = 32  # enough to see int8 kernels that disagree with their program; the q/dq program is slow
MIN_PTE_VS_PROGRAM_DB = 30.0  # int8 kernels vs the PT2E program they were lowered from: rounding only
MIN_BIAS_SHIFT = 1e-4  # a bias the correction moved, well above float rounding of the BatchNorm fold
LAYERS = ("aten.conv2d.", "aten.linear.")  # ops whose third argument is a bias


@pytest.fixture(scope="module")
def digits(digit_images, tmp_path_factory):
    from deploytool import api

    config = api.load_config(tmp_path_factory.mktemp("bias"), overrides={
        "model": "zoo:digits", "data.calib": str(digit_images), "data.calib_limit": CALIBRATION_SAMPLES})
    return api.prepare(config)


@pytest.fixture(scope="module")
def corrected(digits):
    pytest.importorskip("nncf", reason="NNCF is not installed (pip install 'deploytool[bias]')")
    from deploytool.quantize.bias import quantize_bias_corrected

    return quantize_bias_corrected(digits.captured(), recipe=QuantConfig(), calibration=digits.split.calibration,
                                   example_inputs=digits.example_inputs)


def biases(program) -> list[torch.Tensor]:
    """The float bias of every conv and linear, in graph order."""
    module = program.module()
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    return [tensors[node.args[2].target].detach() for node in module.graph.nodes
            if node.op == "call_function" and str(node.target).startswith(LAYERS) and len(node.args) > 2
            and node.args[2]]


def test_bias_corrected_program_lowers_and_runs_in_executorch(digits, corrected, tmp_path):
    from deploytool.context import batch_of_one
    from deploytool.export.executorch import lower_pte
    from deploytool.parity import output_metrics
    from deploytool.runtime import run_artifact

    data, delegation = lower_pte(corrected.program)
    assert delegation.share == 1.0 and not delegation.not_delegated, delegation
    path = tmp_path / "model.pte"
    path.write_bytes(data)
    samples = [batch_of_one(s, digits.inputs) for _, s in digits.held_out()[:HELD_OUT_SAMPLES]]
    run = run_artifact(path, "pte", samples)
    assert run.ok, run.error
    module = corrected.program.module()
    with torch.no_grad():
        reference = [module(*(torch.from_numpy(a) for a in arrays)).numpy() for arrays in samples]
    metrics = output_metrics("output_0", reference, [outputs[0] for outputs in run.outputs])
    assert metrics.sqnr_db >= MIN_PTE_VS_PROGRAM_DB, metrics


def test_bias_correction_moves_a_bias(digits, corrected):
    from deploytool.quantize.session import Plan

    static = digits.session(QuantConfig()).quantized(Plan())
    plain, moved = biases(static.program), biases(corrected.program)
    assert len(plain) == len(moved) == 4  # the digits CNN's three convs (BatchNorm folded in) and its classifier
    shifts = [float((a - b).abs().max()) for a, b in zip(plain, moved)]
    assert max(shifts) > MIN_BIAS_SHIFT, shifts


def test_nncf_writes_nothing_on_stdout(digits, capfd):
    pytest.importorskip("nncf", reason="NNCF is not installed (pip install 'deploytool[bias]')")
    from deploytool.quantize.bias import quantize_bias_corrected

    quantize_bias_corrected(digits.captured(), recipe=QuantConfig(), calibration=digits.split.calibration,
                            example_inputs=digits.example_inputs)
    out, err = capfd.readouterr()
    assert out == ""
    assert "Statistics collection" in err  # NNCF's progress bar, moved to stderr


def test_missing_nncf_says_what_to_install(digits, monkeypatch):
    from deploytool.errors import MissingDependencyError
    from deploytool.quantize.bias import quantize_bias_corrected

    monkeypatch.setitem(sys.modules, "nncf", None)  # what `import nncf` sees when it is not installed
    with pytest.raises(MissingDependencyError) as caught:
        quantize_bias_corrected(digits.captured(), recipe=QuantConfig(), calibration=digits.split.calibration,
                                example_inputs=digits.example_inputs)
    assert caught.value.exit_code == 3
    assert "pip install" in caught.value.hint and "nncf==" in caught.value.hint


def test_an_unknown_range_method_is_a_config_error_with_a_suggestion(digits):
    pytest.importorskip("nncf", reason="NNCF is not installed (pip install 'deploytool[bias]')")
    from deploytool.errors import ConfigError
    from deploytool.quantize.bias import quantize_bias_corrected

    with pytest.raises(ConfigError) as caught:
        quantize_bias_corrected(digits.captured(), recipe=QuantConfig(), calibration=digits.split.calibration,
                                example_inputs=digits.example_inputs, activation_ranges="HISTOGRM")
    assert caught.value.exit_code == 2
    assert "Did you mean 'HISTOGRAM'?" in caught.value.message
