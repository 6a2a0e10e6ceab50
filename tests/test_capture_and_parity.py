"""Capture strategies and diagnosis; parity metrics against values computed by hand."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from deploytool.capture import capture
from deploytool.config import Thresholds
from deploytool.errors import CaptureError
from deploytool.parity import SQNR_EXACT_DB, accuracy, compare, output_metrics


def test_capture_prefers_strict_with_dynamic_batch():
    captured = capture(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(), (torch.zeros(1, 4),))
    assert captured.method == "strict" and captured.dynamic_batch
    assert captured.program.module()(torch.ones(5, 4)).shape == (5, 3)


class PinnedBatch(nn.Module):
    def forward(self, x):
        return x.reshape(1, 6)  # only valid for a batch of one


def test_model_that_pins_batch_falls_back_to_static():
    captured = capture(PinnedBatch(), (torch.zeros(1, 2, 3),))
    assert not captured.dynamic_batch


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # branches on a value
            return x * 2
        return x - 1


def test_data_dependent_control_flow_is_diagnosed_with_the_line():
    with pytest.raises(CaptureError) as error:
        capture(DataDependent(), (torch.ones(1, 3),))
    message = error.value.message
    assert "data-dependent control flow" in message
    assert "test_capture_and_parity.py" in message and "if x.sum() > 0" in message
    assert "torch.cond" in error.value.hint


def test_metrics_match_hand_computation():
    reference = [np.array([[1.0, 2.0, 3.0]]), np.array([[3.0, 1.0, 0.0]])]
    candidate = [np.array([[1.0, 2.0, 3.5]]), np.array([[3.0, 1.0, 0.0]])]
    m = output_metrics("logits", reference, candidate)
    signal = 1 + 4 + 9 + 9 + 1
    assert m.sqnr_db == pytest.approx(10 * math.log10(signal / 0.25))
    assert m.max_abs == pytest.approx(0.5) and m.mean_abs == pytest.approx(0.5 / 6)
    assert m.max_abs_rel == pytest.approx(0.5 / 3)
    assert m.top1_agreement == 1.0
    cos0 = (1 + 4 + 10.5) / (math.sqrt(14) * math.sqrt(1 + 4 + 12.25))
    assert m.cosine == pytest.approx((cos0 + 1) / 2)


def test_identical_outputs_are_exact_and_every_check_is_reported():
    outputs = [[np.array([[0.1, 0.9]])], [np.array([[0.8, 0.2]])]]
    flipped = [[np.array([[0.9, 0.1]])], [np.array([[0.8, 0.2]])]]
    assert output_metrics("o", [o[0] for o in outputs], [o[0] for o in outputs]).sqnr_db == SQNR_EXACT_DB
    result = compare(outputs, flipped, output_names=("o",), candidate_name="m.pte", reference_name="eager",
                     thresholds=Thresholds(min_sqnr_db=30, min_cosine=0.99, min_top1_agreement=0.9))
    assert not result.passed
    # One flip in two decisive samples: the 95% interval reaches past 0.9, so top-1 alone cannot fail here.
    assert [c.name for c in result.checks if not c.passed] == ["sqnr_db", "cosine"]
    assert "[ok  ] o: top-1 agreement 0.5000 (95% CI to 0.9" in "\n".join(result.checklist())


def test_accuracy_uses_labels_when_present():
    outputs = [[np.array([[0.1, 0.9]])], [np.array([[0.8, 0.2]])], [np.array([[0.3, 0.7]])]]
    assert accuracy(outputs, [1, 1, None]) == 0.5
    assert accuracy(outputs, [None, None, None]) is None
