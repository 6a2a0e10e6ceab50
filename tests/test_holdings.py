"""What an artifact holds, measured from the artifact file (report.inspect.holdings), never from the recipe.

On artifacts built here: zoo:digits exported to every target (the session's `exported_all`: int8 .pte, .bpte,
.onnx, .pt2 and fp32 .onnx, .pt, .ptl, .pt2), and small programs lowered through deploytool's own quantizer and
.pte writer: one made only of ops the quantizer annotates none of, and one quantized with dynamic int8, where
XNNPACK runs the linear layer in int8 and leaves the conv in fp32.

The digits figures are checked against the eager model itself: its conv / linear weight elements (int8 bytes)
and its MACs, counted with forward hooks.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from deploytool.report.inspect import EIGHT_BIT, FLOAT, holdings, inspect_artifact

DIGITS_LAYERS = 4  # 3 conv + 1 linear


class Unannotated(torch.nn.Module):
    """LayerNorm then GELU: weights, but no pattern XNNPACK's quantizer annotates."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.norm = torch.nn.LayerNorm(64)
        self.act = torch.nn.GELU()

    def forward(self, x):
        return self.act(self.norm(x))


class ConvHead(torch.nn.Module):
    """A small conv, then a linear layer holding most of the weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 8 * 8, 256)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


CONV_HEAD_MACS = {"conv": 8 * 8 * 8 * 3 * 3 * 3, "linear": 256 * 8 * 8 * 8}


def lowered_pte(model: torch.nn.Module, example: tuple, folder: Path, *, dynamic: bool) -> Path:
    """`model` through deploytool's quantizer (static or dynamic int8), calibrated on a few random inputs, and
    lowered by deploytool's .pte writer."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from deploytool.capture import capture
    from deploytool.config import QuantConfig
    from deploytool.export.executorch import lower_pte
    from deploytool.quantize import pt2e

    captured = capture(model.eval(), example)
    prepared = pt2e.prepare(captured, recipe=QuantConfig(), all_dynamic=dynamic)
    for seed in range(4):
        prepared(*(torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) for x in example))
    program = pt2e.reexport(captured, convert_pt2e(prepared), example_inputs=example).program
    data, _ = lower_pte(program)
    path = folder / f"{type(model).__name__.lower()}{'.dynamic' if dynamic else ''}.pte"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def small_programs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("holdings")
    return {"unannotated": lowered_pte(Unannotated(), (torch.randn(1, 64),), folder, dynamic=False),
            "dynamic": lowered_pte(ConvHead(), (torch.randn(1, 3, 8, 8),), folder, dynamic=True)}


@pytest.fixture(scope="module")
def digits_eager() -> dict[str, int]:
    """The eager digits CNN's conv / linear weight elements and MACs (output elements x reduction size)."""
    from model_zoo.digits.model import build

    model = build().eval()
    macs = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs.append(output.numel() * kernel)
        else:
            macs.append(output.numel() * module.in_features)

    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for layer in layers:
        layer.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, 1, 8, 8))
    assert len(layers) == DIGITS_LAYERS
    return {"weights": sum(layer.weight.numel() for layer in layers), "macs": sum(macs)}


def eight_bit_bytes(found) -> int:
    return sum(n for dtype, n in found.weight_bytes.items() if dtype in EIGHT_BIT)


def test_static_int8_pte_is_int8_by_bytes_and_by_macs(exported_all, digits_eager):
    output, _ = exported_all
    found = holdings(output / "android" / "model.pte", "pte", expected="int8")
    assert found.label == "int8" and found.reason is None, found
    assert found.int8_weight_share > 0.9, found
    # Every conv / linear weight element stored as one byte, every MAC the eager model does in an int8 kernel.
    assert eight_bit_bytes(found) == digits_eager["weights"], found.weight_bytes
    assert found.compute_unit == "MACs"
    assert found.compute_total == digits_eager["macs"] and found.int8_compute_share == 1.0, found
    assert not found.weight_bytes.get("float32"), found.weight_bytes  # BatchNorm folded, biases int32


def test_bundled_program_holds_what_its_pte_holds(exported_all):
    output, _ = exported_all
    pte = holdings(output / "android" / "model.pte", "pte")
    bundled = holdings(output / "android" / "model.bpte", "bpte")
    assert bundled.to_dict() == {**pte.to_dict(), "format": "bpte"}


def test_int8_onnx_and_pt2_are_int8(exported_all, digits_eager):
    output, _ = exported_all
    onnx = holdings(output / "server" / "model.int8.onnx")
    assert onnx.label == "int8" and onnx.int8_weight_share > 0.9, onnx
    assert eight_bit_bytes(onnx) == digits_eager["weights"], onnx.weight_bytes  # zero points are not weights
    assert onnx.compute_unit == "MACs" and onnx.compute_total == digits_eager["macs"], onnx
    assert onnx.int8_compute_share == 1.0, onnx  # every Conv / Gemm reads dequantized int8 on both inputs

    aoti = holdings(output / "server" / "model.int8.pt2")
    assert aoti.label == "int8" and aoti.int8_weight_share > 0.9, aoti
    assert (aoti.compute_unit, aoti.compute_int8, aoti.compute_total) == ("ops", DIGITS_LAYERS, DIGITS_LAYERS), aoti


@pytest.mark.parametrize("name, unit, total", [
    ("server/model.onnx", "MACs", None),  # None: the eager model's MACs
    ("server/model.pt", "ops", DIGITS_LAYERS),
    ("server/model.pt2", "ops", DIGITS_LAYERS),
    ("android/model.ptl", "ops", DIGITS_LAYERS),
])
def test_fp32_artifacts_hold_no_int8(exported_all, digits_eager, name, unit, total):
    output, _ = exported_all
    found = holdings(output / name)
    assert found.label == "fp32" and found.reason is None, found
    assert found.int8_weight_share == 0 and found.int8_compute_share == 0, found
    assert not set(found.weight_bytes) & EIGHT_BIT, found.weight_bytes
    assert found.weight_bytes["float32"] >= 4 * digits_eager["weights"], found.weight_bytes
    assert (found.compute_unit, found.compute_total) == (unit, total or digits_eager["macs"]), found


def test_a_program_the_quantizer_matched_nothing_in_is_fp32_with_the_reason(small_programs):
    path = small_programs["unannotated"]
    found = holdings(path, "pte", expected="int8")
    assert found.label == "fp32", found
    assert found.int8_weight_share == 0 and found.int8_compute_share is None, found
    assert set(found.weight_bytes) <= FLOAT and found.weight_bytes, found.weight_bytes  # LayerNorm's weight, bias
    assert found.reason and "matched no pattern" in found.reason, found.reason
    # Asked for fp32, the same file needs no explanation.
    assert holdings(path, "pte", expected="fp32").reason is None
    assert "holds: fp32" in inspect_artifact(path).text()


def test_dynamic_int8_runs_the_linear_layer_in_int8_and_the_conv_in_fp32(small_programs):
    found = holdings(small_programs["dynamic"], "pte", expected="int8")
    assert found.float_compute == {"conv": 1}, found
    assert found.compute_unit == "MACs"
    assert found.compute_int8 == CONV_HEAD_MACS["linear"], found
    assert found.compute_total == sum(CONV_HEAD_MACS.values()), found
    assert found.weight_bytes["float32"] >= 4 * 8 * 3 * 3 * 3, found.weight_bytes  # the conv's filter stays fp32
    assert found.label == "int8", found  # the linear layer is 98% of the weight bytes


def test_holdings_read_files_without_torch(exported_all, small_programs):
    """Reports measure every artifact: reading .pte, .bpte, .onnx, .pt2 and .ptl files loads no torch."""
    output, _ = exported_all
    paths = [output / "android" / "model.pte", output / "android" / "model.bpte", output / "android" / "model.ptl",
             output / "server" / "model.int8.onnx", output / "server" / "model.int8.pt2", small_programs["dynamic"]]
    probe = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        from deploytool.report.inspect import holdings
        labels = [holdings(Path(p)).label for p in sys.argv[1:]]
        print(json.dumps({"labels": labels, "torch": "torch" in sys.modules}))
    """)
    done = subprocess.run([sys.executable, "-c", probe, *map(str, paths)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"labels": ["int8", "int8", "fp32", "int8", "int8", "int8"], "torch": False}, result


def test_to_dict_is_json_and_inspect_states_what_it_holds(exported_all):
    output, _ = exported_all
    found = holdings(output / "server" / "model.int8.pt2")
    assert json.loads(json.dumps(found.to_dict())) == found.to_dict()
    inspected = inspect_artifact(output / "server" / "model.int8.onnx")
    assert inspected.holdings == holdings(output / "server" / "model.int8.onnx")
    assert "holds: int8" in inspected.text() and inspected.to_dict()["holdings"]["label"] == "int8"


NOTHING_TO_QUANTIZE = '''
import torch
from torch import nn


class Normed(nn.Module):
    """LayerNorm and GELU only: nothing XNNPACK's int8 quantizer annotates."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(16)

    def forward(self, x):
        return torch.nn.functional.gelu(self.norm(x))


def build():
    torch.manual_seed(0)
    return Normed().eval()
'''


def test_an_int8_export_that_quantized_nothing_is_called_fp32_in_the_table_and_the_manifest(cli):
    import numpy as np

    (cli.folder / "model.py").write_text(NOTHING_TO_QUANTIZE)
    np.save(cli.folder / "calib.npy", np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32))
    result = cli("export", "--model", "model.py:build", "--calib", "calib.npy", "--target", "android")
    row = next(line for line in result.stdout.splitlines() if "model.pte" in line and "android" in line)
    assert "fp32 (asked int8)" in row, result.stdout
    assert "holds: fp32: 0% of weight bytes 8-bit" in result.stdout and "matched no pattern" in result.stdout
    manifest = json.loads((cli.folder / "build/deploytool/android/manifest.json").read_text())
    (entry,) = manifest["artifacts"]
    assert entry["precision"] == "int8" and entry["holds"]["label"] == "fp32"
    assert "matched no pattern" in entry["holds"]["reason"]
