"""Verdict rules on real runtimes: decisive top-1 with a confidence interval, the lowering check that a broken
.pte fails and a correct one passes, and the task metric deciding int8."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from deploytool.config import Thresholds
from deploytool.parity import TaskMetric, accuracy, compare, lowering_check, task_result


def _logits(rows):
    return [[np.array([row], np.float32)] for row in rows]


def test_near_tie_flips_do_not_count_and_a_real_drop_fails():
    rng = np.random.default_rng(0)
    decisive = rng.normal(size=(60, 10))
    decisive[np.arange(60), rng.integers(0, 10, 60)] += 6.0  # a clear winner per sample
    ties = np.zeros((40, 10))
    ties[:, :2] = 1.0  # two classes level: any rounding decides them
    eager = _logits([*decisive, *ties])
    flipped_ties = _logits([*decisive, *ties[:, ::-1]])
    thresholds = Thresholds(min_top1_agreement=0.85)
    kept = compare(eager, flipped_ties, output_names=("o",), thresholds=thresholds, candidate_name="c",
                   reference_name="eager")
    assert kept.outputs[0].top1_agreement == pytest.approx(0.6)  # all flips counted: it would fail
    assert kept.outputs[0].decisive_samples == 60 and kept.passed
    shuffled = decisive.copy()
    shuffled[:30] = np.roll(shuffled[:30], 1, axis=1)  # half the decisive winners move: a real change
    broken = compare(eager, _logits([*shuffled, *ties]), output_names=("o",), thresholds=thresholds,
                     candidate_name="c", reference_name="eager")
    assert not broken.passed
    assert "[FAIL] o: top-1 agreement 0.5000 (95% CI to" in "\n".join(broken.checklist())


def test_task_metric_decides_int8_and_the_rest_is_information():
    eager = _logits([[4.0, 0.0], [0.0, 4.0]] * 10)
    noisy = _logits([[3.0, 0.5], [0.5, 3.0]] * 10)  # SQNR well under 30 dB, predictions unchanged
    labels = [0, 1] * 10
    task = task_result(TaskMetric("top-1 accuracy", accuracy, max_drop=3.0), eager, noisy, labels)
    result = compare(eager, noisy, output_names=("o",), thresholds=Thresholds(min_sqnr_db=30), task=task,
                     candidate_name="c", reference_name="eager")
    assert result.passed and task.drop == 0.0
    assert [c.info for c in result.checks] == [True, False]
    without_task = compare(eager, noisy, output_names=("o",), thresholds=Thresholds(min_sqnr_db=30),
                           candidate_name="c", reference_name="eager")
    assert not without_task.passed


@pytest.fixture(scope="module")
def quantized_cnn(digit_images, tmp_path_factory):
    """The digits CNN, int8-quantized on real digit images: its PT2E program and held-out samples."""
    import torch

    from deploytool import api
    from deploytool.config import Activations, QuantConfig
    from deploytool.context import batch_of_one
    from deploytool.quantize.session import Plan

    config = api.load_config(tmp_path_factory.mktemp("verdicts"), overrides={
        "model": "zoo:digits", "data.calib": str(digit_images), "data.calib_limit": 128})
    prepared = api.prepare(config)
    program = prepared.session(QuantConfig(activations=Activations.STATIC)).quantized(Plan()).program
    samples = [batch_of_one(s, prepared.inputs) for _, s in prepared.held_out()[:40]]
    module = prepared.loaded.module
    with torch.inference_mode():
        eager = [[module(torch.from_numpy(s[0])).numpy()] for s in samples]
        reference = [[program.module()(torch.from_numpy(s[0])).numpy()] for s in samples]
    return program, samples, eager, reference


def _run_pte(program, samples, tmp_path):
    from deploytool.export.executorch import lower_pte
    from deploytool.runtime import run_artifact

    data, _ = lower_pte(program)
    path = tmp_path / "model.pte"
    path.write_bytes(data)
    run = run_artifact(path, "pte", samples, timeout_s=120)
    assert run.ok, run.error
    return run.outputs


def _swap_first_conv_channels(program):
    """The same program with two output channels of its first int8 conv weight swapped and their scales not:
    the kind of layout slip (a wrong dim order) a lowering bug makes."""
    import torch

    broken = copy.deepcopy(program)
    tensors = {**broken.state_dict, **broken.constants}
    name = next(n for n, t in tensors.items() if isinstance(t, torch.Tensor) and t.dtype == torch.int8 and t.dim() == 4)
    weight = tensors[name]
    weight[[0, 1]] = weight[[1, 0]].clone()
    return broken


def test_lowering_check_passes_a_correct_pte_and_fails_a_broken_one(quantized_cnn, tmp_path):
    program, samples, eager, reference = quantized_cnn
    good = _run_pte(program, samples, tmp_path)
    bad = _run_pte(_swap_first_conv_channels(program), samples, tmp_path)
    judge = dict(output_names=("logits",), max_loss_db=1.0, candidate_name="model.pte",
                 reference_name="quantized reference")
    correct = lowering_check(eager, reference, good, **judge)
    assert correct.passed, correct.checklist()
    broken = lowering_check(eager, reference, bad, **judge)
    assert not broken.passed, broken.checklist()
    assert broken.checks[0].value > 1.0 > correct.checks[0].value
