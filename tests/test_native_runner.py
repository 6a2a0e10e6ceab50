"""The native C++ runner agrees with ExecuTorch's Python runtime on real programs.

A tiny CNN (seeded, briefly trained on sklearn's 8x8 digits, BatchNorm in eval
mode) is exported to an fp32 XNNPACK program and to a PT2E int8 one; both are
run through `deploytool_runner` (built here from source against the wheel's
prebuilt runtime, a few seconds) and through `executorch.runtime`, on real digit
images, and the outputs must be identical.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import datasets as sklearn_datasets

from deploytool.runtime import native_build, native_runner
from deploytool.runtime.native_runner import (
    NativeBuildError,
    NativeRunError,
    build_runner,
    run_native,
)


N_SAMPLES = 12  # digit images pushed through both runtimes per program


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Path:
    # A fresh cache per session, so the test also covers the build itself.
    return build_runner(tmp_path_factory.mktemp("native-cache"))


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = sklearn_datasets.load_digits()
    x = (d.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8).copy()
    return x, d.target.astype(np.int64)


class TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.nn.functional.max_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def model(digits) -> torch.nn.Module:
    x, y = digits
    torch.manual_seed(0)
    m = TinyCNN()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    xt, yt = torch.tensor(x[:1500]), torch.tensor(y[:1500])
    m.train()
    for step in range(40):  # enough for non-trivial weights and BN statistics
        idx = torch.arange(step * 128, step * 128 + 128) % len(xt)
        loss = torch.nn.functional.cross_entropy(m(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def _lower(ep) -> bytes:
    from deploytool.export.executorch import lower_pte

    return lower_pte(ep)[0]


@pytest.fixture(scope="module")
def fp32_pte(model, digits, tmp_path_factory) -> Path:
    x, _ = digits
    ep = torch.export.export(model, (torch.tensor(x[:1]),))
    path = tmp_path_factory.mktemp("pte") / "digits_fp32.pte"
    path.write_bytes(_lower(ep))
    return path


@pytest.fixture(scope="module")
def int8_pte(model, digits, tmp_path_factory) -> Path:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    x, _ = digits
    example = (torch.tensor(x[:1]),)
    captured = torch.export.export(model, example).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for i in range(1000, 1128):  # calibrate on digits not used for the comparison
            prepared(torch.tensor(x[i : i + 1]))
    converted = convert_pt2e(prepared)
    ep = torch.export.export(converted, example)
    path = tmp_path_factory.mktemp("pte") / "digits_int8.pte"
    path.write_bytes(_lower(ep))
    return path


def _python_runtime(pte: Path, x: np.ndarray) -> list[np.ndarray]:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(pte)).load_method("forward")
    return [np.asarray(o) for o in method.execute((torch.tensor(x),))]


def _compare(runner: Path, pte: Path, digits) -> tuple[np.ndarray, np.ndarray]:
    x, _ = digits
    natives, pythons = [], []
    for i in range(N_SAMPLES):
        sample = x[1700 + i : 1701 + i]
        native = run_native(runner, pte, [sample])
        python = _python_runtime(pte, sample)
        assert len(native) == len(python) == 1
        assert native[0].dtype == python[0].dtype == np.float32
        assert native[0].shape == python[0].shape == (1, 10)
        # Same program, same kernels, same delegate: expect bit-identical output.
        np.testing.assert_allclose(native[0], python[0], rtol=0, atol=1e-6)
        natives.append(native[0])
        pythons.append(python[0])
    return np.concatenate(natives), np.concatenate(pythons)


# --------------------------------------------------------------------------- parity


def test_fp32_native_matches_python_runtime(runner, fp32_pte, model, digits):
    native, python = _compare(runner, fp32_pte, digits)
    assert np.array_equal(native, python), "fp32 outputs differ in the last bits"
    x, _ = digits
    with torch.no_grad():
        eager = model(torch.tensor(x[1700 : 1700 + N_SAMPLES])).numpy()
    np.testing.assert_allclose(native, eager, rtol=1e-4, atol=1e-4)


def test_int8_native_matches_python_runtime(runner, int8_pte, fp32_pte, digits):
    native, python = _compare(runner, int8_pte, digits)
    assert np.array_equal(native, python), "int8 outputs differ in the last bits"
    # Sanity: quantization changed the numbers, but not the predictions much.
    x, y = digits
    fp32 = np.concatenate(
        [run_native(runner, fp32_pte, [x[1700 + i : 1701 + i]])[0] for i in range(N_SAMPLES)]
    )
    assert not np.array_equal(native, fp32)
    assert (native.argmax(1) == fp32.argmax(1)).mean() >= 0.75


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_programs_run_through_xnnpack(runner, fp32_pte, int8_pte, tmp_path, which):
    """The delegate is linked in and registered: the method names it and loads."""
    pte = fp32_pte if which == "fp32" else int8_pte
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    (in_dir / "in_0.bin").write_bytes(np.zeros((1, 1, 8, 8), np.float32).tobytes())
    proc = subprocess.run(
        [str(runner), str(pte), str(in_dir), str(tmp_path / "out")],
        capture_output=True, text=True, env=dict(os.environ, DEPLOYTOOL_RUNNER_VERBOSE="1"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "backends: XnnpackBackend" in proc.stderr


def test_repeated_runs_are_deterministic(runner, int8_pte, digits):
    x, _ = digits
    a = run_native(runner, int8_pte, [x[5:6]])[0]
    b = run_native(runner, int8_pte, [x[5:6]])[0]
    assert np.array_equal(a, b)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("keep", [0.5, 0.05, 0.0])
def test_truncated_pte_is_a_clear_error(runner, fp32_pte, digits, tmp_path, keep):
    data = fp32_pte.read_bytes()
    broken = tmp_path / "truncated.pte"
    broken.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(NativeRunError) as info:
        run_native(runner, broken, [digits[0][:1]])
    err = info.value
    assert err.signal_name is None, f"runner crashed instead of failing cleanly: {err}"
    assert err.returncode and err.returncode > 0
    assert "truncated.pte" in str(err)
    assert "cannot load program" in str(err)
    assert "Error::Invalid" in str(err)  # the runtime's own reason is quoted


def test_missing_pte_is_a_clear_error(runner, tmp_path, digits):
    with pytest.raises(NativeRunError, match="model file not found"):
        run_native(runner, tmp_path / "nope.pte", [digits[0][:1]])


def test_wrong_input_shape_names_expected_bytes(runner, fp32_pte):
    with pytest.raises(NativeRunError, match=r"input 0.*rank 4 \[1, 1, 8, 8\]"):
        run_native(runner, fp32_pte, [np.zeros((1, 64), np.float32)])


def test_wrong_input_dtype_is_rejected(runner, fp32_pte):
    with pytest.raises(NativeRunError, match="dtype float64 given but the method expects float32"):
        run_native(runner, fp32_pte, [np.zeros((1, 1, 8, 8), np.float64)])


def test_wrong_input_count_is_rejected(runner, fp32_pte):
    x = np.zeros((1, 1, 8, 8), np.float32)
    with pytest.raises(NativeRunError, match="missing input file"):
        run_native(runner, fp32_pte, [])
    with pytest.raises(NativeRunError, match="takes only 1 input"):
        run_native(runner, fp32_pte, [x, x])


def test_raw_file_size_mismatch_is_reported(runner, fp32_pte, tmp_path):
    """The raw CLI contract: without a side-car JSON, size is checked against metadata."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "in_0.bin").write_bytes(b"\0" * 100)
    proc = subprocess.run(
        [str(runner), str(fp32_pte), str(in_dir), str(out_dir)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (
        "deploytool_runner: error: input 0 (in_0.bin): expected 256 bytes "
        "(float32 [1, 1, 8, 8]) but the file has 100 bytes"
    )
    (in_dir / "in_0.bin").write_bytes(np.ones((1, 1, 8, 8), np.float32).tobytes())
    proc = subprocess.run(
        [str(runner), str(fp32_pte), str(in_dir), str(out_dir)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (out_dir / "out_0.json").read_text().strip() == '{"dtype": "float32", "shape": [1, 10]}'
    assert (out_dir / "out_0.bin").stat().st_size == 40


def test_crash_names_the_signal(tmp_path):
    fake = tmp_path / "fake_runner"
    fake.write_text("#!/bin/sh\nkill -SEGV $$\n")
    fake.chmod(0o755)
    with pytest.raises(NativeRunError, match="SIGSEGV") as info:
        run_native(fake, tmp_path / "m.pte", [np.zeros(1, np.float32)])
    assert info.value.signal_name == "SIGSEGV"


def test_timeout_is_reported(tmp_path):
    fake = tmp_path / "slow_runner"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    with pytest.raises(NativeRunError, match="timed out after 0.5s"):
        run_native(fake, tmp_path / "m.pte", [np.zeros(1, np.float32)], timeout_s=0.5)


# --------------------------------------------------------------------------- build


def test_build_is_cached(runner, tmp_path_factory):
    cache = runner.parent.parent.parent
    again = build_runner(cache)
    assert again == runner
    assert (runner.parent.parent / "build.log").is_file()


def test_build_names_missing_wheel_parts(tmp_path, monkeypatch):
    fake_root = tmp_path / "executorch"
    (fake_root / "include").mkdir(parents=True)
    monkeypatch.setattr(native_build, "_executorch_root", lambda: fake_root)
    with pytest.raises(NativeBuildError) as info:
        build_runner(tmp_path / "cache")
    msg = str(info.value)
    assert "executorch-config.cmake" in msg
    assert "module.h" in msg
    assert "libexecutorch_backend_xnnpack" in msg


def test_build_names_missing_cmake(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.delenv("DEPLOYTOOL_CMAKE", raising=False)
    monkeypatch.setattr(native_runner.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(NativeBuildError, match="cmake >= 3.19 is required") as info:
        build_runner(tmp_path / "cache")
    assert "pip install cmake" in (info.value.hint or "")


def test_build_names_missing_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler++")
    with pytest.raises(NativeBuildError, match="no-such-compiler"):
        build_runner(tmp_path / "cache")


def test_module_import_does_not_pull_torch():
    code = (
        "import sys, deploytool.runtime.native_runner as m; "
        "bad = [n for n in ('torch', 'executorch') if n in sys.modules]; "
        "assert not bad, bad"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
