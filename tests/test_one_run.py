"""`export --calib` quantizes and exports in one run; repeating `export` with nothing changed reuses what the
first run computed."""
import json
import shutil


def test_export_with_calib_quantizes_and_exports_in_one_run_and_a_repeat_reuses_it(cli, digit_images, monkeypatch):
    from deploytool import api

    shutil.copytree(digit_images, cli.folder / "data")
    args = ("export", "--model", "zoo:digits", "--calib", "data", "--calib-limit", "64", "--target", "android")
    result = cli(*args)
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

    # Nothing that shapes the program changed: no capture, no model run on the held-out samples; program,
    # references and .pte are read. (An option the unchanged-export stamp sees makes the export run in full.)
    (cli.folder / "deploytool.toml").write_text("[parity]\ntimeout_s = 301.0\n")
    ran = []
    monkeypatch.setattr(api.Prepared, "captured", lambda self: ran.append("capture"))
    monkeypatch.setattr(api.Prepared, "outputs_of", lambda self, module: ran.append(module))
    repeat = cli(*args)
    assert ran == []
    for line in ("reusing the quantized program", "reusing the held-out references", "reusing the lowered .pte"):
        assert line in repeat.stderr
    assert json.loads((out / "android" / "report.json").read_text())["artifacts"][0]["passed"]
    monkeypatch.undo()

    # A changed held-out sample leaves the program (calibration unchanged) but not the references.
    config = api.load_config(cli.folder, overrides={"model": "zoo:digits", "data.calib": "data",
                                                    "data.calib_limit": 64})
    held_out = [ref.path for ref, _ in api.prepare(config).split.held_out.samples()]
    shutil.copyfile(held_out[1], held_out[0])
    changed = cli(*args, expect=None)
    assert "reusing the quantized program" in changed.stderr
    assert "reusing the held-out references" not in changed.stderr



def test_quantize_runs_each_variant_on_the_held_out_samples_once(tmp_path, digit_images, monkeypatch):
    from deploytool import api

    ran = []
    outputs_of = api.Prepared.outputs_of
    monkeypatch.setattr(api.Prepared, "outputs_of", lambda self, module: ran.append(module) or outputs_of(self, module))
    config = api.load_config(tmp_path, overrides={"model": "zoo:digits", "data.calib": str(digit_images),
                                                  "data.calib_limit": 64})
    result = api.quantize(config)
    # Each variant the search judged, plus eager: the kept variant's outputs are not computed a second time.
    assert len(ran) == len(result.recipe["search"]["steps"]) + 1
    assert len(result.outputs) == result.held_out_samples
