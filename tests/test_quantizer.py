"""deploytool's quantizer choices and the lowering / verification plumbing around them, on a small conv +
ReLU6 network (the MobileNet pattern) calibrated on generated images.

- conv + ReLU6 is one quantized pattern: no int8 step between the conv and its clamp, and no separate clamp
  left in the XNNPACK graph;
- the sampled histogram observer keeps the exact range and picks the scale torchao's full histogram picks;
- lowering leaves the program's node history as it found it;
- a prestarted runtime child runs the artifact like a fresh one, and an unused one is stopped.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deploytool.config import QuantConfig
from deploytool.quantize import recipes

CALIBRATION_SAMPLES = 48
MIN_PTE_VS_REFERENCE_DB = 30.0  # int8 kernels vs the PT2E program they were lowered from: rounding only
SCALE_TOLERANCE = 0.02  # sampled vs full histogram: relative difference of the chosen scale


class ConvRelu6Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU6(inplace=True),
            torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.BatchNorm2d(16), torch.nn.ReLU6(inplace=True),
            torch.nn.Conv2d(16, 8, 1))

    def forward(self, x):
        return self.features(x)


def images(count: int, seed: int) -> np.ndarray:
    """Smooth random images in [0, 1]: blurred noise, so neighbouring pixels correlate as in photos."""
    noise = torch.rand(count, 3, 20, 20, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.avg_pool2d(noise, 5, stride=1).numpy().astype(np.float32)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from deploytool.capture import capture
    from deploytool.data.arrays import array_files
    from deploytool.quantize import pt2e

    folder = tmp_path_factory.mktemp("convrelu6")
    np.save(folder / "calib.npy", images(CALIBRATION_SAMPLES, seed=1))
    model = ConvRelu6Net().eval()
    with torch.no_grad():  # BatchNorm statistics of the data, so activations are not degenerate
        model.train()
        model(torch.from_numpy(images(64, seed=2)))
        model.eval()
    example = (torch.from_numpy(images(1, seed=3)),)
    calibration = array_files([folder / "calib.npy"], ("x",), "generated images")
    captured = capture(model, example)
    calibrated = pt2e.calibrate(captured, recipe=QuantConfig(), calibration=calibration, example_inputs=example)
    program = pt2e.reexport(captured, convert_pt2e(calibrated.prepared), example_inputs=example).program
    return program, folder


def test_conv_relu6_is_one_quantized_pattern(quantized):
    program, _ = quantized
    clamps = [n for n in program.graph.nodes if n.op == "call_function" and "hardtanh" in str(n.target)]
    assert len(clamps) == 2
    # The conv's fp32 result goes straight into the clamp; only the clamp's output is quantized.
    assert all("conv" in str(clamp.args[0].target) for clamp in clamps), [str(c.args[0].target) for c in clamps]


def test_int8_pte_fuses_the_clamps_and_matches_its_program(quantized):
    from deploytool.export.executorch import lower_pte
    from deploytool.report.inspect import inspect_pte
    from deploytool.parity import output_metrics
    from deploytool.runtime import run_artifact

    program, folder = quantized
    data, delegation = lower_pte(program)
    assert delegation.share == 1.0 and not delegation.not_delegated
    path = folder / "model.pte"
    path.write_bytes(data)
    ops = {op for backend in inspect_pte(path).delegated.values() for op in backend}
    assert "XNNConv2d" in ops and not any("Clamp" in op for op in ops), ops

    held_out = images(8, seed=4)
    run = run_artifact(path, "pte", [(x[None],) for x in held_out])
    assert run.ok, run.error
    with torch.no_grad():
        reference = [program.module()(torch.from_numpy(x[None])).numpy() for x in held_out]
    metrics = output_metrics("output_0", reference, [outputs[0] for outputs in run.outputs])
    assert metrics.sqnr_db >= MIN_PTE_VS_REFERENCE_DB, metrics


def test_lowering_keeps_the_programs_node_history(quantized):
    from deploytool.export.executorch import lower_pte

    program, _ = quantized
    before = {node.name: node.meta.get("from_node") for node in program.graph.nodes}
    assert any(before.values())  # capture and quantization leave a history to keep
    lower_pte(program)
    assert {node.name: node.meta.get("from_node") for node in program.graph.nodes} == before


def feed(observer, batches) -> tuple[float, float, float]:
    for batch in batches:
        observer(batch)
    scale, _ = observer.calculate_qparams()
    return float(observer.min_val), float(observer.max_val), float(scale)


@pytest.mark.parametrize("shape, batches", [((4, 32, 64, 64), 3), ((2, 16, 8, 8), 40)],
                         ids=["large activations: strided sample", "small activations: buffered"])
def test_sampled_histogram_keeps_the_range_and_the_scale(shape, batches):
    from torchao.quantization.pt2e.observer import HistogramObserver

    sampled_class, _ = recipes.histogram_observer_classes()
    generator = torch.Generator().manual_seed(5)
    data = [torch.randn(shape, generator=generator).relu_() * (1 + i % 3) for i in range(batches)]
    data[-1].view(-1)[7] = 40.0  # one outlier, off every stride: the range must still reach it
    full = feed(HistogramObserver(eps=recipes.EPS), data)
    sampled = feed(sampled_class(eps=recipes.EPS), data)
    assert sampled[:2] == full[:2] == (0.0, 40.0)
    assert sampled[2] == pytest.approx(full[2], rel=SCALE_TOLERANCE)


def test_a_prestarted_runtime_runs_the_artifact_and_an_unused_one_is_stopped(quantized):
    from deploytool import runtime
    from deploytool.export.executorch import lower_pte

    program, folder = quantized
    path = folder / "prestarted.pte"
    path.write_bytes(lower_pte(program)[0])
    samples = [(images(1, seed=6),)]
    fresh = runtime.run_artifact(path, "pte", samples)
    runtime.prestart("pte")
    child = runtime._prestarted["pte"]
    warm = runtime.run_artifact(path, "pte", samples)
    assert "pte" not in runtime._prestarted and child.returncode == 0  # the prestarted child did the job
    np.testing.assert_array_equal(warm.outputs[0][0], fresh.outputs[0][0])

    runtime.prestart("onnx")
    unused = runtime._prestarted["onnx"]
    runtime._stop_prestarted()
    assert unused.poll() is not None
