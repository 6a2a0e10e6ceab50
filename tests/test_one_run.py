"""`export --calib` quantizes and exports in one run; repeating `export` with nothing changed reuses what the
first run computed."""
import json


def test_export_with_calib_quantizes_and_exports_in_one_run(cli, digit_images):
    result = cli("export", "--model", "zoo:digits", "--calib", str(digit_images), "--calib-limit", "64",
                 "--target", "android")
    out = cli.folder / "build" / "deploytool"
    assert (out / "quantized" / "program.pt2").is_file()
    record = json.loads((out / "quantized" / "quantize.json").read_text())
    assert record["recipe"]["search"]["steps"][0]["name"] == "static int8"
    assert result.stderr.count("captured with torch.export") == 1  # quantize and export share one capture
    assert "search: static int8" in result.stderr
    assert "quantized program: " in result.stdout and "(written)" in result.stdout
    (artifact,) = json.loads((out / "android" / "report.json").read_text())["artifacts"]
    assert artifact["precision"] == "int8" and artifact["passed"]
    assert json.loads((out / "android" / "manifest.json").read_text())["artifact"]["precision"] == "int8"

