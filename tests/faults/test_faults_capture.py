"""Fault matrix, capture stage: a forward() torch.export cannot capture fails with exit 4, naming the line."""
from __future__ import annotations

import pytest
from faultkit import QUANTIZED_PROGRAM

from deploytool.errors import CaptureError, DataError

CASES = [
    pytest.param("model.py:branchy", CaptureError, 4,
                 ("cannot be captured with torch.export", "data-dependent control flow", "model.py:",
                  "if x.sum() > 0", "hint: Replace the Python `if` on a tensor with torch.where / torch.cond"),
                 id="data-dependent-control-flow"),
    pytest.param("model.py:two_inputs", DataError, 2,
                 ("a sample holds 1 input(s), the model takes 2 (x, y)", "hint: For several inputs use .npz"),
                 id="forward-takes-more-inputs-than-the-data-has"),
]


@pytest.mark.parametrize("model, error, exit_code, fragments", CASES)
def test_capture_fault(fault, project, model, error, exit_code, fragments):
    fault("quantize", "--model", model, "--calib", "calib.npy", error=error, exit_code=exit_code, fragments=fragments)
    assert not (project / QUANTIZED_PROGRAM).exists()
