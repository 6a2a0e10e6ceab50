"""Quantization's engine (deploytool/quantize/session.py): one calibration, every variant built from it.

The model is the outlier digits CNN of test_quant_quality (per-tensor int8 hurts features.0 and features.3), on
the real digit PNGs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_quant_quality import write_project

OUTLIER_DIGITS = f"{Path(__file__).with_name('test_quant_quality.py')}:outlier_digits"


@pytest.fixture
def session(tmp_path, digit_images):
    from deploytool import api
    from deploytool.config import Observer, QuantConfig, load_config

    folder = write_project(tmp_path, OUTLIER_DIGITS, digit_images, holdout=0.3)
    return api.prepare(load_config(folder)).session(QuantConfig(per_channel=False, observer=Observer.HISTOGRAM))


def _outputs(session, module) -> list[np.ndarray]:
    return [sample[0] for sample in session._run(module)]


def test_a_variant_from_the_one_calibration_equals_one_calibrated_for_itself(session):
    """The variants read the all-static calibration's observers; a calibration of their own records the same.
    (Plans that regroup the observers shared around the max-pool keep the group's range: see transplant.)"""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from deploytool.quantize import pt2e
    from deploytool.quantize.session import Plan

    calibration, example = session.prepared.split.calibration, session.prepared.example_inputs
    for plan in (Plan(fp32=("features.0",)), Plan(dynamic=("features.0",))):
        own = pt2e.prepare(session.captured, recipe=session.recipe, keep_fp32=plan.fp32, dynamic=plan.dynamic)
        pt2e.feed(own, calibration, example_inputs=example, batch=session.batch)
        expected = _outputs(session, convert_pt2e(own))
        actual = _outputs(session, session.converted(plan))
        assert all(np.array_equal(a, e) for a, e in zip(actual, expected)), plan.name
        # ... and the variant is a different quantization from the all-static one.
        static = _outputs(session, session.converted(Plan()))
        assert not all(np.array_equal(a, s) for a, s in zip(actual, static)), plan.name


def test_a_tensor_the_calibration_never_saw_is_an_error_not_a_guess(session):
    from deploytool.errors import QuantizeError
    from deploytool.quantize import pt2e
    from deploytool.quantize.session import transplant

    # Calibrated with features.0 in fp32, so the input of features.0 was never observed.
    partial = pt2e.calibrate(session.captured, recipe=session.recipe, calibration=session.prepared.split.calibration,
                             example_inputs=session.prepared.example_inputs, batch_size=session.batch,
                             keep_fp32=("features.0",))
    with pytest.raises(QuantizeError, match="recorded no statistics for tensor"):
        transplant(partial.prepared, pt2e.prepare(session.captured, recipe=session.recipe))


def test_a_mixed_plan_lowers_fully_delegated_and_runs_in_the_executorch_runtime(session, tmp_path):
    """Dynamic int8 for one layer, static around it: XNNPACK takes every op, and the .pte in the ExecuTorch
    runtime computes what the program computes (per sample: dynamic ranges are measured per inference)."""
    from deploytool.context import batch_of_one
    from deploytool.export.executorch import lower_pte
    from deploytool.parity import output_metrics
    from deploytool.quantize.diagnose import dynamic_capable
    from deploytool.quantize.session import Plan
    from deploytool.runtime import run_artifact

    capable = dynamic_capable(session)
    # ExecuTorch's dynamic config leaves a conv followed by a ReLU in fp32; the mixed plan only picks the others.
    assert "features.3" not in capable and capable
    plan = Plan(dynamic=(sorted(capable)[0],))
    program = session.quantized(plan).program
    data, delegation = lower_pte(program)
    assert delegation.share == 1.0, delegation
    path = tmp_path / "model.pte"
    path.write_bytes(data)
    samples = [batch_of_one(s, session.prepared.inputs) for _, s in session.prepared.held_out()][:32]
    run = run_artifact(path, "pte", samples, timeout_s=120)
    assert run.ok, run.error
    expected = session.prepared.outputs_of(program.module())[:32]
    metrics = output_metrics("output_0", [e[0] for e in expected], [o[0] for o in run.outputs])
    assert metrics.sqnr_db > 30, metrics  # the lowering keeps the program's numbers (int8 rounding at most)
    # ... and the dynamic layer is really dynamic: its input is quantized per inference in the program.
    assert any("choose_qparams" in str(node.target) for node in program.graph.nodes)
