"""The child stages of benchmarks/run.py, each run in a fresh interpreter (`run.py --child STAGE ARG WORK RESULT`)
so that its time and peak RSS are its own: deploytool's CLI commands, the peer flows with stock APIs, latency.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

RUN = Path(__file__).with_name("run.py")
MODEL = "mobilenet_v2"  # the trained torchvision MobileNetV2 (IMAGENET1K_V1, 224x224) of the zoo
HOLDOUT = 0.4  # the zoo entry's own held-out share: ~47 of 117 photos judged, not the CLI default's ~23


class Stopwatch:
    """Wall and CPU (user+sys, all threads) seconds per named stage."""

    def __init__(self):
        self.stages: dict[str, dict[str, float]] = {}

    def __call__(self, name: str, function, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        value = function(*args, **kwargs)
        self.stages[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
        return value


def photos_config(work: Path, output: str = "peer-data"):
    """The config every flow shares: the zoo model, the photos written once, the zoo's held-out share."""
    from deploytool import api

    return api.load_config(work, overrides={"model": f"zoo:{MODEL}", "data.calib": str(work / "photos"),
                                            "data.holdout": HOLDOUT, "output": str(work / output)})


def child_cli(argv: str, work: Path) -> dict:
    """One deploytool command, in-process as `deploytool ...` runs it, with the run's own stage timings.

    The spies only record what api.prepare and api.export return; the command runs unchanged."""
    from deploytool import api
    from deploytool.cli import main

    seen: dict[str, object] = {}

    def spy(name: str) -> None:
        original = getattr(api, name)

        def recorded(*args, **kwargs):
            value = original(*args, **kwargs)
            seen.setdefault(name, value)
            return value

        setattr(api, name, recorded)

    for name in ("prepare", "export"):
        spy(name)
    code, started = 0, time.perf_counter()
    try:
        main(json.loads(argv))
    except SystemExit as exc:  # parity FAIL is exit 1: still a measured run
        code = exc.code if isinstance(exc.code, int) else 1
    prepared = seen.get("prepare")
    return {"exit_code": code, "command_s": time.perf_counter() - started,
            "timings": dict(prepared.timings) if prepared is not None else {},
            "artifacts": [{"format": r.format, "timings": dict(r.timings)} for r in seen.get("export") or []]}


def child_peer(flow: str, work: Path) -> dict:
    """One peer flow, eager -> int8 artifact with the stock APIs, then its artifact in its own runtime."""
    watch = Stopwatch()
    watch("import", _imports, flow)
    from deploytool import api
    from deploytool.context import batch_of_one

    config = photos_config(work)
    prepared = watch("load model + data", api.prepare, config)
    calibration = watch("decode calibration photos", lambda: [
        _torch_sample(batch_of_one(s, prepared.inputs)) for _, s in prepared.split.calibration.samples()])
    folder = work / "peers" / flow
    folder.mkdir(parents=True, exist_ok=True)
    note = ""
    try:
        path = (_onnxruntime_flow if flow == "onnxruntime" else _executorch_flow)(
            flow, watch, prepared.loaded.module, _canonical(prepared.example_inputs), calibration, folder)
    except Exception as exc:  # a peer that cannot run here is a row saying why, not a dead benchmark
        note = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        return {"flow": flow, "stages": watch.stages, "error": note}
    flow_s = sum(s["wall_s"] for s in watch.stages.values())
    outputs = watch("evaluate (not in the flow's time)", _run_artifact, path, prepared)
    return {"flow": flow, "stages": watch.stages, "flow_s": flow_s, "path": str(path),
            "size_bytes": path.stat().st_size, "quality": _quality(prepared, outputs),
            "calibration_samples": len(calibration), "held_out": [r.key for r, _ in prepared.held_out()]}


def _imports(flow: str) -> None:
    import torch  # noqa: F401

    if flow == "onnxruntime":
        import onnxruntime.quantization  # noqa: F401
    else:
        import executorch.exir  # noqa: F401
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: F401
        if flow == "nncf":
            import nncf  # noqa: F401


def _torch_sample(arrays) -> tuple:
    import torch

    return _canonical(tuple(torch.from_numpy(a) for a in arrays))


def _canonical(tensors: tuple) -> tuple:
    """Copies with canonical strides: a stride of 0 on a size-1 dim ends to_executorch with '0 in strides'."""
    import torch

    return tuple(torch.empty(t.shape, dtype=t.dtype).copy_(t) for t in tensors)


def _executorch_flow(flow: str, watch: Stopwatch, model, example: tuple, calibration: list, folder: Path) -> Path:
    """torch.export -> PT2E (XNNPACKQuantizer, per-channel) -> to_edge_transform_and_lower -> .pte."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    program = watch("capture (torch.export)", torch.export.export, model, example)
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=flow == "et-dynamic"))
    if flow == "nncf":
        import nncf
        from nncf.experimental.torch.fx import quantize_pt2e

        quantized = watch("quantize (nncf quantize_pt2e: calibrate, fast bias correction, convert)", quantize_pt2e,
                          program.module(), quantizer, nncf.Dataset(calibration, lambda inputs: inputs),
                          subset_size=len(calibration), fast_bias_correction=True)
    else:
        observed = watch("prepare_pt2e", prepare_pt2e, program.module(), quantizer)
        # Dynamic activations take their ranges at run time: one example run, as the stock recipe does.
        batches = calibration if flow == "et-reference" else [example]
        watch("calibrate", _forward_all, observed, batches)
        quantized = watch("convert_pt2e", convert_pt2e, observed)

    def lower() -> Path:
        edge = to_edge_transform_and_lower(torch.export.export(quantized, example), partitioner=[XnnpackPartitioner()])
        path = folder / "model.pte"
        path.write_bytes(edge.to_executorch().buffer)
        return path

    return watch("lower (torch.export, to_edge_transform_and_lower, to_executorch)", lower)


def _forward_all(module, batches: list) -> None:
    import torch

    with torch.inference_mode():
        for inputs in batches:
            module(*inputs)


def _onnxruntime_flow(flow: str, watch: Stopwatch, model, example: tuple, calibration: list, folder: Path) -> Path:
    """torch.onnx.export -> quant_pre_process -> quantize_static (QDQ, per-channel weights)."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, pre, int8 = folder / "model.onnx", folder / "model.pre.onnx", folder / "model.int8.onnx"
    watch("torch.onnx.export", torch.onnx.export, model, example, str(fp32), input_names=["x"],
          output_names=["output_0"])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": inputs[0].numpy()} for inputs in calibration])

        def get_next(self):
            return next(self.feeds, None)

    watch("quant_pre_process", quant_pre_process, str(fp32), str(pre))
    watch("quantize_static", quantize_static, str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ,
          per_channel=True)
    return int8


def _run_artifact(path: Path, prepared) -> list:
    """The artifact's first output on each held-out photo, in its own runtime (ExecuTorch or onnxruntime)."""
    import numpy as np
    from deploytool.context import batch_of_one

    samples = [batch_of_one(s, prepared.inputs) for _, s in prepared.held_out()]
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [np.asarray(session.run(None, {"x": arrays[0]})[0]) for arrays in samples]
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return [method.execute(list(_torch_sample(arrays)))[0].numpy() for arrays in samples]


def _quality(prepared, outputs: list) -> dict:
    """SQNR vs eager, top-1 agreement (all samples, decisive samples) and top-1 accuracy on the entry's labels."""
    from deploytool.parity import accuracy, output_metrics

    eager = [o[0] for o in prepared.eager_outputs()]
    metrics = output_metrics("output_0", eager, outputs)
    return {"sqnr_db": metrics.sqnr_db, "top1_agreement": metrics.top1_agreement,
            "decisive_samples": metrics.decisive_samples, "decisive_agreement": metrics.decisive_agreement,
            "samples": len(eager), "accuracy": accuracy([[o] for o in outputs], prepared.truths()),
            "eager_accuracy": accuracy([[o] for o in eager], prepared.truths())}


def child_bench(paths: str, work: Path) -> dict:
    """eager and each artifact at batch 1, 1 and 2 threads, each in a fresh runtime process."""
    from deploytool import api
    from deploytool.bench import bench

    spec = json.loads(paths)
    config = photos_config(work)
    rows = bench(config, [Path(p) for p in spec["paths"]], threads=spec["threads"], runs=spec["runs"],
                 prepared=api.prepare(config))
    return {"rows": [r.to_dict() for r in rows]}


def child_pte_pair(model: str, work: Path) -> dict:
    """Only the int8 and fp32 .pte of a zoo model (android), each verified, then both benched."""
    from deploytool import api
    from deploytool.bench import bench
    from deploytool.config import Precision
    from deploytool.report.inspect import inspect_pte
    from deploytool.zoo import entry, entry_config

    zoo_entry = entry(model)
    config = entry_config(zoo_entry, zoo_entry.recipe, output=work / model)
    prepared = api.prepare(config)
    int8 = api.export(config, targets=("android",), formats=("pte",), precision=Precision.INT8, prepared=prepared)
    fp32 = api.export(replace(config, output=str(work / f"{model}-fp32")), targets=("android",), formats=("pte",),
                      precision=Precision.FP32, prepared=prepared)
    reports = (int8[0], fp32[0])
    rows = bench(config, [r.artifact_path for r in reports], threads=(1, 2), runs=30, prepared=prepared)
    return {"artifacts": [{"precision": r.precision, "passed": r.passed,
                           "sqnr_db": r.vs_eager().outputs[0].sqnr_db if r.vs_eager() else None,
                           "inspect": inspect_pte(r.artifact_path).to_dict()} for r in reports],
            "bench": [r.to_dict() for r in rows]}


CHILDREN = {"cli": child_cli, "peer": child_peer, "bench": child_bench, "pte-pair": child_pte_pair}


def run_child(stage: str, arg: str, work: Path, threads: int = 2) -> dict:
    """One child stage in a fresh interpreter; adds its wall time, CPU time and peak RSS."""
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, str(RUN), "--child", stage, arg, str(work), str(result)],
                                   env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)  # CPU time of the child; its peak RSS it reports itself
        code = os.waitstatus_to_exitcode(status)
        if code != 0 or not result.is_file():
            tail = "\n".join(stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{stage} {arg} failed (exit {code}):\n{tail}")
        values = json.loads(result.read_text())
    return {**values, "process": {"wall_s": time.perf_counter() - started, "cpu_s": usage.ru_utime + usage.ru_stime,
                                  "peak_rss_mb": values["peak_rss_mb"]}}

