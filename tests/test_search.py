"""The int8 recipe search on the digits CNN and real digit images: static int8 reaches about 38 dB, dynamic
int8 about 52 dB, so a budget between the two makes the search take its second step."""
from __future__ import annotations

import json

import pytest

BETWEEN_DB = 45.0  # above static (~38 dB), below dynamic (~52 dB) on the held-out digits


@pytest.fixture
def calibration_passes(monkeypatch) -> list[int]:
    """Counts every calibration pass (quantize.pt2e.feed: the only code that runs samples through observers)."""
    from deploytool.quantize import pt2e

    passes: list[int] = []
    real_feed = pt2e.feed

    def counting_feed(*args, **kwargs):
        passes.append(1)
        return real_feed(*args, **kwargs)

    monkeypatch.setattr(pt2e, "feed", counting_feed)
    return passes


def _record(folder) -> dict:
    return json.loads((folder / "build/deploytool/quantized/quantize.json").read_text())


def test_search_stops_at_static_when_it_meets_the_default_budget(cli, digit_images, calibration_passes):
    result = cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3")
    search = _record(cli.folder)["recipe"]["search"]
    assert [s["name"] for s in search["steps"]] == ["static int8"]
    assert search["met"] and search["activations"] == "static" and search["budget"] == {"min_sqnr_db": 20.0}
    kept = search["steps"][0]
    assert kept["latency_ms"] > 0 and kept["size_bytes"] > 0  # measured on the lowered .pte
    assert "search: static int8: SQNR" in result.stderr and calibration_passes == [1]


def test_a_budget_static_misses_takes_dynamic_from_the_same_calibration(cli, digit_images, calibration_passes):
    cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3",
        "--min-sqnr", str(BETWEEN_DB))
    record = _record(cli.folder)
    steps = record["recipe"]["search"]["steps"]
    assert [s["name"] for s in steps] == ["static int8", "dynamic int8"]
    assert not steps[0]["met"] and steps[0]["sqnr_db"] < BETWEEN_DB <= steps[1]["sqnr_db"] and steps[1]["met"]
    assert steps[0]["latency_ms"] is None and steps[1]["latency_ms"] > 0  # only the kept variant is lowered
    assert record["recipe"]["activations"] == "dynamic" and record["fallback"] is None
    assert calibration_passes == [1]  # dynamic int8 calibrates nothing: one pass served both variants

    # The replay: export lowers the recorded dynamic program, and the .pte runs in the ExecuTorch runtime.
    cli("export", "--target", "android")
    report = json.loads((cli.folder / "build/deploytool/android/report.json").read_text())
    assert report["passed"] and report["quantization"]["activations"] == "dynamic"
    pte = next(a for a in report["artifacts"] if a["format"] == "pte")
    vs_eager = pte["parity"]["comparisons"][0]["outputs"][0]
    assert vs_eager["sqnr_db"] >= BETWEEN_DB  # static int8 could not have reached this
    assert pte["delegation"]["share"] == 1.0
    assert calibration_passes == [1]  # export reused the program: no calibration again


def test_no_search_gives_the_plain_recipe(cli, digit_images):
    cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3", "--no-search")
    record = _record(cli.folder)
    assert record["recipe"]["search"] is None and record["recipe"]["activations"] == "static"
