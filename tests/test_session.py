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
