"""The int8 recipe search on the digits CNN and real digit images: static int8 reaches about 38 dB, dynamic
int8 about 52 dB, so a budget between the two makes the search take its second step."""
from __future__ import annotations

import json

import pytest
from test_quant_quality import _parse_html

# Above static (~38 dB), below dynamic (~52 dB) on the held-out digits, and further above static than bias
# correction or a mix gained anywhere (search.BIAS_GAIN_DB, MIX_GAIN_DB): the search goes static -> dynamic.
BETWEEN_DB = 48.0
NEAR_STATIC_DB = 40.0  # within both of static: the NNCF step (when NNCF is installed) and the mix are tried


def _record(folder) -> dict:
    return json.loads((folder / "build/deploytool/quantized/quantize.json").read_text())


def test_search_stops_at_static_when_it_meets_the_default_budget(cli, digit_images, calibration_passes):
    result = cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3")
    search = _record(cli.folder)["recipe"]["search"]
    assert [s["name"] for s in search["steps"]] == ["static int8"]
    assert search["met"] and search["activations"] == "static" and search["budget"] == {"min_sqnr_db": 20.0}
    kept = search["steps"][0]
    assert kept["latency_ms"] > 0 and kept["size_bytes"] > 0  # measured on the lowered .pte
    assert kept["int8_weight_share"] > 0.9  # read from the .pte: its weights are stored in 8 bits
    assert "search: static int8: SQNR" in result.stderr and calibration_passes == [1]


def test_a_budget_static_misses_takes_dynamic_from_the_same_calibration(cli, digit_images, calibration_passes):
    cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3",
        "--min-sqnr", str(BETWEEN_DB), "--diagnose")
    record = _record(cli.folder)
    steps = record["recipe"]["search"]["steps"]
    assert [s["name"] for s in steps] == ["static int8", "dynamic int8"]  # nothing in between can gain 10 dB
    assert [s["met"] for s in steps] == [False, True]
    assert steps[0]["sqnr_db"] < BETWEEN_DB <= steps[1]["sqnr_db"]
    assert [s["latency_ms"] is None for s in steps] == [True, False]  # only the kept variant is lowered
    assert record["recipe"]["activations"] == "dynamic" and record["fallback"] is None
    assert record["recipe"]["search"]["plan"] == {"dynamic": [], "fp32": [], "all_dynamic": True,
                                                  "bias_corrected": False}
    assert calibration_passes == [1]  # dynamic int8 (and the diagnosis) read the one calibration
    # The whole table in the diagnosis page, one row per step.
    page = cli.folder / "build/deploytool/diagnosis/report.html"
    assert "<h2>Recipe search</h2>" in page.read_text()
    assert [c for c in _parse_html(page).cells if "int8" in c] == [s["name"] for s in steps]

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


def test_a_budget_near_static_tries_bias_correction_before_dynamic(cli, digit_images, calibration_passes):
    import importlib.util

    cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3",
        "--min-sqnr", str(NEAR_STATIC_DB))
    steps = _record(cli.folder)["recipe"]["search"]["steps"]
    with_nncf = importlib.util.find_spec("nncf") is not None  # the bias step needs deploytool[bias] (in dev)
    # No mix on the digits CNN: ExecuTorch's dynamic config takes only its classifier (its convs feed ReLUs), and a
    # mix of every layer it takes is dynamic int8 itself.
    assert [s["activations"] for s in steps] == ["static", *(["static"] * with_nncf), "dynamic"]
    assert not steps[0]["met"] and steps[-1]["met"]
    if with_nncf:  # judged like the others, kept only if it met the budget (on the digits NNCF's ranges clip)
        assert steps[1]["name"] == "static int8, bias-corrected (NNCF)"
        assert steps[1]["met"] == (steps[1]["sqnr_db"] >= NEAR_STATIC_DB)
    assert calibration_passes == [1]  # NNCF collects its own statistics (not a feed of ours)


@pytest.mark.parametrize("short_db,expected", [
    (2.0, ["static", "bias", "mixed", "dynamic"]),  # within what a mix (3 dB) and NNCF (7 dB) gained
    (5.0, ["static", "bias", "dynamic"]),
    (9.0, ["static", "dynamic"]),
])
def test_the_search_tries_only_the_steps_that_could_reach_the_budget(short_db, expected, monkeypatch):
    from deploytool.config import QuantConfig
    from deploytool.quantize import bias, search

    monkeypatch.setattr(bias, "nncf_available", lambda: True)  # the order, whether or not NNCF is installed here
    recipe = QuantConfig()
    static = search.Step("static int8", recipe.target_sqnr_db - short_db, None, None, False)
    tried = [search.Tried(search.STATIC, static, None)]
    plans = search.order(recipe, lambda: ("features.14.conv.2",), tried)
    assert next(plans) == search.STATIC
    names = ["static"] + ["bias" if p.bias_corrected else p.activations for p in plans]
    assert names == expected


def test_a_step_that_raises_is_a_row_and_the_search_goes_on(cli, digit_images, monkeypatch):
    """NNCF's bias correction raised IndexError on a 1-D conv pitch model and ended the whole run (exit 4); now that
    step is a row with its reason, and the next step is tried and kept."""
    from deploytool.quantize import bias

    def raising(*args, **kwargs):
        raise IndexError("list assignment index out of range")

    monkeypatch.setattr(bias, "nncf_available", lambda: True)
    monkeypatch.setattr(bias, "quantize_bias_corrected", raising)
    cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--holdout", "0.3",
        "--min-sqnr", str(NEAR_STATIC_DB))
    steps = _record(cli.folder)["recipe"]["search"]["steps"]
    failed = [s for s in steps if s["error"]]
    assert [s["name"] for s in failed] == ["static int8, bias-corrected (NNCF)"], steps
    assert failed[0]["error"] == "IndexError: list assignment index out of range" and failed[0]["sqnr_db"] is None
    assert steps[-1]["activations"] == "dynamic" and steps[-1]["met"]
