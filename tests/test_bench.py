"""`deploytool bench`: every format timed in its own runtime, at the thread counts asked for, next to eager."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_runner import Cli
from deploytool.bench import BenchRow, measure, reliability, table

RUNS = "3"  # enough for median/p10/p90 to exist; the numbers themselves are not asserted (no timed tests)


@pytest.fixture(scope="module")
def exported(exported_all) -> tuple[Cli, Path]:
    """zoo:digits quantized on real digits, then every format of every target exported (conftest's)."""
    output, _ = exported_all
    return Cli(output.parent.parent), output


@pytest.mark.slow
def test_bench_runs_every_format_at_each_thread_count(exported):
    cli, output = exported
    rows = json.loads(cli("bench", "--threads", "1,2", "--runs", RUNS, "--warmup", "1", "--json").stdout)
    manifests = [json.loads(p.read_text()) for p in output.glob("*/manifest.json")]
    formats = {(a["format"], a["precision"]) for m in manifests for a in m["artifacts"]}
    assert {("pte", "int8"), ("bpte", "int8"), ("ptl", "fp32"), ("onnx", "fp32"), ("onnx", "int8"),
            ("torchscript", "fp32"), ("aoti", "fp32"), ("aoti", "int8")} <= formats
    for threads in (1, 2):
        at = [r for r in rows if r["threads"] == threads]
        assert at[0]["format"] == "eager" and at[0]["size_bytes"] > 0, "eager is each thread count's first row"
        assert {(r["format"], r["precision"]) for r in at[1:]} == formats
        for row in at:
            assert row["error"] is None, row
            assert row["runs"] == int(RUNS)
            assert 0 < row["p10_ms"] <= row["median_ms"] <= row["p90_ms"], row
            assert row["peak_rss_mb"] > 10 and row["load_s"] >= 0 and row["cpu_ms"] >= 0
        for row in at[1:]:
            assert row["size_bytes"] == (output / row["name"]).stat().st_size
        # Each runtime reports back the thread count it was given.
        settings = {r["format"]: r["thread_setting"] for r in at}
        assert f"threadpool reports {threads} threads" in settings["pte"]
        assert f"intra_op_num_threads = {threads}" in settings["onnx"]
        assert f"torch.get_num_threads() = {threads}" in settings["aoti"]
        assert f"torch.get_num_threads() = {threads}" in settings["eager"]
    # android/ and ios/ hold the same .pte bytes: benched once, the copy named.
    pte = next(r for r in rows if r["name"] == "android/model.pte")
    assert pte["also"] == ["ios/model.pte"]
    assert not any(r["name"] == "ios/model.pte" for r in rows)


@pytest.mark.slow
def test_bench_table_shows_ratios_to_eager(exported):
    cli, output = exported
    stdout = cli("bench", str(output / "server" / "model.int8.onnx"), "--threads", "1", "--runs", RUNS).stdout
    lines = stdout.splitlines()
    assert "x eager" in lines[0] and "peak RSS MB" in lines[0]
    ratio_end = lines[0].index("x eager") + len("x eager")  # numbers are right-aligned under their header
    ratios = {line.split()[1]: float(line[:ratio_end].split()[-1]) for line in lines[1:3]}
    assert ratios["eager"] == 1.0
    assert ratios["server/model.int8.onnx"] > 0
    assert "SessionOptions.intra_op_num_threads = 1" in stdout


def test_bench_rejects_bad_threads_and_missing_artifacts(cli, tmp_path):
    result = cli("bench", "--threads", "0,2", expect=2)
    assert "--threads" in result.stderr
    result = cli("bench", str(tmp_path / "nope.pte"), "--model", "zoo:digits", expect=2)
    assert "nope.pte does not exist" in result.stderr
    (tmp_path / "model.xyz").write_bytes(b"")
    result = cli("bench", "model.xyz", "--model", "zoo:digits", expect=2)
    assert "suffix '.xyz'" in result.stderr


def test_measure_orders_percentiles_and_counts_runs():
    calls = []
    result = measure(lambda: calls.append(sum(range(20000))), runs=9, warmup=3, load_s=0.5, thread_setting="x")
    assert len(calls) == 3 + 9  # the first call (timed on its own) counts as the first warm-up call
    assert result["runs"] == 9 and result["load_s"] == 0.5
    assert 0 < result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]


def _timed(p10: float, median: float, p90: float, *, load: float | None = 0.3, cores: int = 2, threads: int = 1):
    return reliability(p10_ms=p10, median_ms=median, p90_ms=p90, load_avg=load, cores=cores, threads=threads)


def test_steady_timings_on_a_quiet_machine_are_not_flagged():
    assert _timed(24.0, 25.0, 27.0) is None
    assert _timed(24.0, 25.0, 27.0, load=2.0, cores=2, threads=2) is None  # the benchmark's own two threads
    assert _timed(1.0, 1.1, 1.2, load=None) is None  # no load average on this OS: judge the spread alone
    assert _timed(24.0, 25.0, 27.0, load=9.0, cores=16, threads=4) is None  # busy, but cores to spare


def test_spread_timings_are_flagged_as_noisy():
    warning = _timed(25.0, 40.0, 289.0)  # the band is 6.6x the median: no single figure stands for the runs
    assert warning.startswith("noisy") and "25-289 ms" in warning
    assert _timed(20.0, 25.0, 33.0) is not None  # p10-p90 over half the median
    assert _timed(20.0, 25.0, 32.0) is None


def test_a_loaded_machine_is_named_with_its_load_and_cores():
    warning = _timed(280.0, 289.0, 300.0, load=3.9, cores=2, threads=2)
    assert warning == "busy machine: load average 3.9 on 2 cores"
    both = _timed(25.0, 40.0, 289.0, load=3.9, cores=2)
    assert "noisy" in both and "busy machine" in both


def test_table_puts_the_warning_on_the_unreliable_row_only():
    def row(name: str, median: float, load: float) -> BenchRow:
        return BenchRow(name, "eager" if name == "eager" else "onnx", "fp32", "rt", 2, 1000, runs=5,
                        median_ms=median, p10_ms=median * 0.95, p90_ms=median * 1.05, first_ms=median, cpu_ms=median,
                        load_s=0.1, peak_rss_mb=100.0, load_avg=load, cores=2)

    lines = table([row("eager", 25.0, 0.5), row("server/model.onnx", 289.0, 4.2)]).splitlines()
    assert "unreliable" not in lines[1]
    assert lines[2].startswith("2") and lines[2].endswith("! unreliable: busy machine: load average 4.2 on 2 cores")
    assert row("x", 1.0, 4.2).to_dict()["warning"] == "busy machine: load average 4.2 on 2 cores"


def test_measure_records_the_machine_load():
    result = measure(lambda: None, runs=3, warmup=1, load_s=0.0, thread_setting="x")
    assert result["cores"] >= 1 and (result["load_avg"] is None or result["load_avg"] >= 0)


def test_inspect_spells_each_dtype_one_way():
    from deploytool.report.inspect import TensorInfo, dtype_name

    # ExecuTorch's ScalarType outside a delegate, XNNPACK's datatype inside it: the same float32 input.
    assert dtype_name("FLOAT") == dtype_name("xnn_datatype_fp32") == "float32"
    assert dtype_name("LONG") == "int64" and dtype_name("xnn_datatype_qcint8") == "qcint8"
    assert TensorInfo("x", [1, 3, 8, 8], dtype_name("xnn_datatype_fp32"), False).bytes == 3 * 64 * 4


@pytest.mark.slow
def test_inspect_reads_the_xnnpack_graph_inside_the_pte_and_the_optimized_onnx(exported):
    cli, output = exported
    pte = json.loads(cli("inspect", str(output / "android" / "model.pte"), "--json").stdout)
    xnnpack = pte["delegated"]["delegated to XnnpackBackend"]
    assert xnnpack["XNNConv2d"] >= 2 and xnnpack["XNNFullyConnected"] == 1  # digits: 3 convs (1 depthwise), 1 linear
    assert pte["not_delegated"] == {}
    assert pte["qdq_boundaries"] == xnnpack["XNNConvert"] == 2, "int8 end to end: quantize in, dequantize out"
    assert any(t["dtype"] == "qcint8" and t["constant"] for t in pte["tensors"]), "per-channel int8 weights"
    float_names = {t["dtype"] for t in pte["tensors"]} & {"float", "fp32", "float32"}
    assert float_names <= {"float32"}, "one name for float32, inside the delegate and outside it"
    onnx = json.loads(cli("inspect", str(output / "server" / "model.int8.onnx"), "--json").stdout)
    optimized = next(iter(onnx["delegated"].values()))
    assert optimized.get("QLinearConv", 0) >= 1, optimized
    result = cli("inspect", str(output / "server" / "model.pt"), expect=2)
    assert "reads .pte and .onnx" in result.stderr


@pytest.mark.slow
def test_export_again_reuses_the_lowered_pte_from_the_content_cache(exported, tmp_path):
    # On a copy: exporting android alone rewrites its report, which the server-format tests read.
    output = Path(shutil.copytree(exported[1], tmp_path / "build" / "deploytool"))
    before = (output / "android" / "model.pte").read_bytes()
    result = Cli(tmp_path)("export", "--output", "build/deploytool", "--target", "android",
                           "--format", "pte,bpte,ptl")  # what the fixture wrote there
    assert "reusing the lowered .pte" in result.stderr
    assert (output / "android" / "model.pte").read_bytes() == before
    assert len(list((output / ".cache" / "pte").glob("*.pte"))) == 1, "one int8 program, one cache entry"
