"""Run a .bpte: ExecuTorch verifies its bundled cases, then the embedded program runs our samples.

Both go through ExecuTorch's bundled-program bindings (the C++ `verify_method_outputs` an app calls),
so a bundle whose expected outputs its own program no longer reproduces fails the parity row.

Child-process entry for the writer's self-test:
    python -m deploytool.runtime.bundled MODEL.bpte RESULT.json
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


class BundleVerificationFailed(RuntimeError):
    """The embedded program's outputs differ from the bundled expected outputs beyond the tolerances."""


@dataclass
class SelfTest:
    cases: int
    atol: float
    rtol: float
    failed: list[int] = field(default_factory=list)  # case indices outside the tolerances

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def summary(self) -> str:
        verdict = f"{self.cases - len(self.failed)}/{self.cases} cases pass"
        failed = f"; case(s) {', '.join(map(str, self.failed))} exceed it" if self.failed else ""
        return f"{verdict} (atol {self.atol:.3g}, rtol {self.rtol:g}){failed}"


def self_test(path: Path) -> SelfTest:
    """Every bundled case through `BundledModule.verify_result_with_bundled_expected_output`.

    >>> self_test(Path("build/deploytool/android/model.bpte")).passed
    True
    """
    from deploytool.bundle_format import METHOD, sidecar_path

    tolerances = _read_sidecar(sidecar_path(Path(path)))
    bundle = _load_bundle(Path(path))
    result = SelfTest(tolerances["cases"], tolerances["atol"], tolerances["rtol"])
    for case in range(result.cases):
        try:
            bundle.verify_result_with_bundled_expected_output(METHOD, case, result.rtol, result.atol)
        except RuntimeError:  # "Result verification failed with status 32": outside the tolerances
            result.failed.append(case)
    return result


def run(path: Path, samples: list[tuple[np.ndarray, ...]]) -> list[list[np.ndarray]]:
    """Self-test the bundle (raise when it fails), then run the embedded program on `samples`."""
    from deploytool.runtime.executorch import run_each

    check = self_test(path)
    if not check.passed:
        raise BundleVerificationFailed(f"{Path(path).name}: bundled self-test failed: {check.summary}")
    return run_each(_embedded_forward(Path(path)), samples)


def bench(path: Path, sample: tuple[np.ndarray, ...], *, runs: int, warmup: int, threads: int) -> dict:
    """Latency of the embedded program (the self-test is not timed), on ExecuTorch's threadpool at `threads`."""
    from deploytool.runtime.executorch import bench_forward

    return bench_forward(lambda: _embedded_forward(Path(path)), sample, runs=runs, warmup=warmup, threads=threads)


def _embedded_forward(path: Path):
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_bundled_program

    bundle = _load_bundle(path)
    module = _load_for_executorch_from_bundled_program(bundle)

    def forward(inputs):
        return module.forward(inputs)

    forward.bundle = bundle  # the module reads the program from the bundle's buffer: keep it alive
    return forward


def _load_bundle(path: Path):
    from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

    return _load_bundled_program_from_buffer(path.read_bytes())


def _read_sidecar(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
        return {"cases": int(values["cases"]), "atol": float(values["atol"]), "rtol": float(values["rtol"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleVerificationFailed(f"{path} is missing or unreadable ({type(exc).__name__}); it holds the "
                                       "bundle's tolerances. Re-run `deploytool export`.") from None


def main(argv: list[str]) -> int:
    bundle, result_path = argv
    result = self_test(Path(bundle))
    Path(result_path).write_text(json.dumps({**asdict(result), "passed": result.passed, "summary": result.summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
