"""The user's own metric (--metric file.py:fn): it decides int8 verdicts and the search, where SQNR and the task
disagree; and the built-in top-1 for (batch, classes) and (batch, time, classes) outputs."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from deploytool.errors import ConfigError
from deploytool.metric import call_metric
from deploytool.parity import accuracy, output_metrics, top1_metric

# A classifier whose logits carry a per-sample offset that softmax ignores (the same for every class, from 16 small
# features), and whose first feature spikes to 200 on about a third of the inputs. Static int8 takes its input
# range from the spike, which leaves the small features a level or two: the offset is ruined (SQNR about 3 dB)
# while the decision is not (top-1 100%). Dynamic int8 measures each input's own range and does better on SQNR
# (about 9 dB), which is what the search keeps when SQNR is all it has.
MODEL = textwrap.dedent('''
    import torch
    from torch import nn

    FEATURES, CLASSES, SMALL = 32, 8, 16


    class OffsetClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(FEATURES, FEATURES)
            self.head = nn.Linear(FEATURES, CLASSES)
            with torch.no_grad():
                self.hidden.weight.copy_(torch.eye(FEATURES))
                self.hidden.bias.zero_()
                prototypes = torch.zeros(CLASSES, FEATURES)
                for c in range(CLASSES):
                    prototypes[c, 1 + 2 * c: 3 + 2 * c] = 5.0
                prototypes[:, FEATURES - SMALL:] = 40.0  # the offset: every class alike
                self.head.weight.copy_(prototypes)
                self.head.bias.zero_()

        def forward(self, x):
            return self.head(self.hidden(x))


    def build():
        return OffsetClassifier().eval()
''')

METRIC = textwrap.dedent('''
    import numpy as np


    def accuracy(outputs, targets):
        return float(np.mean(outputs.argmax(-1) == targets))
''')


def _write_project(folder):
    (folder / "model.py").write_text(MODEL)
    (folder / "metric.py").write_text(METRIC)
    rng = np.random.default_rng(0)
    count, features, classes, small = 120, 32, 8, 16
    targets = rng.integers(0, classes, count)
    x = rng.normal(0, 0.3, (count, features)).astype(np.float32)
    for i, c in enumerate(targets):
        x[i, 1 + 2 * c: 3 + 2 * c] += 4.0
    x[:, features - small:] = rng.normal(0, 0.1, (count, small))
    x[rng.random(count) < 0.3, 0] = 200.0
    np.savez(folder / "data.npz", x=x, targets=targets)
    np.savez(folder / "plain.npz", x=x)


def _search(folder, output):
    record = json.loads((folder / output / "quantized" / "quantize.json").read_text())
    return record["recipe"]["search"]


@pytest.mark.slow
def test_the_users_metric_changes_the_verdict_and_the_search_where_sqnr_and_the_task_disagree(cli):
    _write_project(cli.folder)
    common = ("--model", "model.py:build", "--target", "android")
    by_sqnr = cli("export", *common, "--calib", "plain.npz", "--output", "by_sqnr", expect=1)
    assert "FAIL" in by_sqnr.stdout
    search = _search(cli.folder, "by_sqnr")
    assert search["activations"] == "dynamic" and not search["met"], search["steps"]

    by_task = cli("export", *common, "--calib", "data.npz", "--metric", "metric.py:accuracy", "--output", "by_task")
    search = _search(cli.folder, "by_task")
    assert search["activations"] == "static" and search["met"], search["steps"]
    report = json.loads((cli.folder / "by_task" / "android" / "report.json").read_text())
    (row,) = report["artifacts"]
    assert row["passed"] and row["accuracy"]["metric"] == "accuracy" and row["accuracy"]["drop_points"] <= 1.0
    sqnr = next(c for c in row["parity"]["comparisons"][0]["checks"] if c["name"] == "sqnr_db")
    assert sqnr["value"] < 15 and sqnr["info"], "SQNR is shown, and the metric decides"
    assert "accuracy drop vs eager 0.0 points" in by_task.stdout


def test_a_metric_outside_0_1_is_refused_naming_the_function():
    outputs = [[np.array([[0.2, 0.8]])], [np.array([[0.9, 0.1]])]]
    with pytest.raises(ConfigError, match=r"metric.py:score returned 1.7; a metric returns a share in \[0, 1\]"):
        call_metric(lambda o, t: 1.7, "metric.py:score", outputs, [1, 0])


def test_the_metric_gets_outputs_and_targets_stacked_on_the_first_axis():
    seen = {}

    def metric(outputs, targets):
        seen["outputs"], seen["targets"] = outputs, targets
        return 0.5

    outputs = [[np.zeros((1, 3)), np.ones((1, 2, 4))] for _ in range(3)]
    assert call_metric(metric, "m.py:f", outputs, [np.array([1.0]), None, np.array([2.0])]) == 0.5
    assert [o.shape for o in seen["outputs"]] == [(2, 3), (2, 2, 4)] and seen["targets"].shape == (2, 1)


def test_per_position_top1_for_sequence_outputs():
    scores = np.zeros((1, 4, 3))
    scores[0, np.arange(4), [0, 1, 2, 1]] = 5.0
    assert accuracy([[scores]], [np.array([0, 1, 2, 2])]) == 0.75
    assert accuracy([[scores]], [np.array([0, 1, 2, -100])]) == 1.0  # negative targets mark padding
    assert top1_metric((1, 4, 3), max_drop=3.0).name == "per-position top-1 accuracy"
    assert top1_metric((1, 4), max_drop=3.0).name == "top-1 accuracy" and top1_metric((1, 1), max_drop=3.0) is None


def test_top1_agreement_is_computed_per_position_for_sequence_outputs():
    rng = np.random.default_rng(0)
    reference = [rng.standard_normal((1, 6, 5)) * 5 for _ in range(4)]
    candidate = [r.copy() for r in reference]
    candidate[0][0, 0] = -reference[0][0, 0]  # one position's decision flips
    metrics = output_metrics("tags", reference, candidate)
    assert metrics.top1_agreement == pytest.approx(23 / 24)
