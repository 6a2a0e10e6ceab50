"""Quantization quality: observers, --keep-fp32, per-layer diagnosis, fp32 fallback to a budget, report.html.

The model under test is the trained digits CNN with two channels made outliers in a function-preserving
way (BatchNorm scale x40 on features.1, the next conv's matching input weights /40): eager outputs are
unchanged, but per-tensor int8 crushes the other channels of features.0's weights and of the activation
that features.3 reads. Real data: the digits PNGs no model was trained on.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

OUTLIER_SCALE = 40.0
OUTLIER_CHANNELS = (3, 7)
BUDGET_DB = 25.0  # between the all-int8 output SQNR (~11 dB) and what fp32 fallback reaches (~36 dB)


def outlier_digits():
    """The zoo digits CNN with outlier channels after features.0; same eager function as the original."""
    import torch

    from model_zoo.digits.model import build

    model = build()
    with torch.no_grad():
        for k in OUTLIER_CHANNELS:
            model.features[1].weight[k] *= OUTLIER_SCALE
            model.features[1].bias[k] *= OUTLIER_SCALE
            model.features[3].weight[:, k] /= OUTLIER_SCALE
    return model


@pytest.fixture
def project(tmp_path, digit_images) -> Path:
    return write_project(tmp_path, f"{Path(__file__).resolve()}:outlier_digits", digit_images, holdout=0.3)


def write_project(folder: Path, model: str, digit_images: Path, *, holdout: float) -> Path:
    """A deploytool.toml in `folder` for `model` on the digit PNGs (grey, normalised to [-1, 1])."""
    (folder / "deploytool.toml").write_text(f"""
model = "{model}"
[preprocess]
color = "L"
mean = [0.5]
std = [0.5]
[data]
calib = "{digit_images}"
holdout = {holdout}
calib_limit = 64
""")
    return folder


def test_outliers_keep_the_eager_function():
    import torch

    from model_zoo.digits.model import build

    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(build()(x), outlier_digits()(x), atol=1e-4)


def test_diagnose_names_the_guilty_layers(cli, project):
    result = cli("diagnose", "--per-tensor", "--observer", "minmax")
    report = json.loads((project / "build/deploytool/diagnosis/report.json").read_text())
    assert report["first_jump"] == "features.3", report["layers"]
    assert set(report["most_sensitive"]) == {"features.0", "features.3"}, report["sensitivity"]
    layers = {layer["name"]: layer["sqnr_db"] for layer in report["layers"]}
    assert layers["features.2"] - layers["features.3"] > 10  # the jump is real, not noise
    assert "features.3" in result.stdout and "error jumps here" in result.stdout

    page = _parse_html(project / "build/deploytool/diagnosis/report.html")
    assert len(page.images) == 3 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert {"features.0", "features.3", "classifier"} <= set(page.cells)


CHROMIUMS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "chrome-headless-shell")
WINDOW = (1000, 3000)  # CSS pixels (device scale 1): tall enough for the whole page in one screenshot
# Appended to a copy of the page: once it has loaded, writes what the browser laid out into the DOM, for --dump-dom.
PROBE = """<script>addEventListener('load', () => { const out = document.createElement('pre'); out.id = 'probe';
out.textContent = JSON.stringify({images: [...document.images].map(i => { const r = i.getBoundingClientRect();
  return {alt: i.alt, natural: [i.naturalWidth, i.naturalHeight], box: [r.left, r.top, r.width, r.height]}; }),
 rows: [...document.querySelectorAll('table tr')].filter(r => r.getBoundingClientRect().height > 0)
  .map(r => [...r.cells].map(c => c.innerText))});
document.body.appendChild(out); });</script>"""


def test_report_renders_in_headless_chromium(cli, project, tmp_path):
    """What a person sees: three plots the browser decoded, laid out and painted with content; the layer rows."""
    from PIL import Image

    browser = next((shutil.which(b) for b in CHROMIUMS if shutil.which(b)), None)
    if browser is None:
        pytest.skip(f"no Chromium binary on PATH (looked for {', '.join(CHROMIUMS)}); .ci/run installs "
                    "chromium-headless-shell with apt")
    cli("diagnose", "--per-tensor", "--observer", "minmax")
    page = project / "build/deploytool/diagnosis/report.html"
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    shot = tmp_path / "shot.png"
    _chromium(browser, tmp_path, f"--screenshot={shot}", page.as_uri())
    dom = _chromium(browser, tmp_path, "--dump-dom", probed.as_uri())
    laid_out = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))

    assert [i["alt"] for i in laid_out["images"]] == ["per-layer SQNR", "per-output error histograms",
                                                      "fp32 fallback trade-off"]
    screenshot = Image.open(shot).convert("L")
    assert screenshot.size == WINDOW
    for image in laid_out["images"]:
        assert min(image["natural"]) > 100, image  # the browser decoded the PNG
        left, top, width, height = image["box"]
        assert width > 300 and height > 100 and top + height <= WINDOW[1], image  # laid out, inside the shot
        plot = np.asarray(screenshot.crop((int(left), int(top), int(left + width), int(top + height))))
        ink = (plot < 200).mean()  # axes, ticks, lines, bars and labels on the white figure
        assert 0.01 < ink < 0.9 and len(np.unique(plot)) > 16, (image["alt"], ink)
    header, *rows = laid_out["rows"]
    assert header == ["layer", "type", "SQNR (dB)", "held-out clipped"]
    shown = {row[0]: row for row in rows}
    assert {"features.0", "features.3", "classifier"} <= set(shown), rows
    assert all(float(row[2]) < 100 for row in rows)  # a number a person can read, per layer


def _chromium(browser: str, profile: Path, *args: str) -> str:
    """stdout of one headless run, isolated from the machine's profile and from the network."""
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile / 'chromium'}",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", *args],
        check=True, timeout=120, capture_output=True, text=True)
    return result.stdout


def test_min_sqnr_keeps_the_guilty_layers_in_fp32(cli, project, calibration_passes):
    # --activations static: the fp32 fallback over static int8 alone, without the dynamic step of the search.
    cli("quantize", "--per-tensor", "--observer", "minmax", "--activations", "static", "--min-sqnr", str(BUDGET_DB))
    assert calibration_passes == [1]  # 4 sensitivity candidates and every step from one pass (quantize/session.py)
    record = json.loads((project / "build/deploytool/quantized/quantize.json").read_text())
    fallback = record["fallback"]
    assert fallback["met"] and sorted(fallback["kept_fp32"]) == ["features.0", "features.3"]
    first, last = fallback["steps"][0], fallback["steps"][-1]
    assert first["sqnr_db"] < BUDGET_DB <= last["sqnr_db"]
    assert last["sqnr_db"] - first["sqnr_db"] > 15
    assert all(step["extra_bytes"] > 0 and step["latency_ms"] > 0 for step in fallback["steps"][1:])
    assert record["recipe"]["kept_fp32_by_fallback"] == fallback["kept_fp32"]

    # Each sensitivity candidate as a job in two worker processes: the same ranking, so the same layers kept.
    result = cli("quantize", "--per-tensor", "--observer", "minmax", "--activations", "static", "--min-sqnr",
                 str(BUDGET_DB), "--jobs", "2", "--output", "build/jobs")
    in_workers = json.loads((project / "build/jobs/quantized/quantize.json").read_text())["fallback"]
    assert in_workers["ranking"] == fallback["ranking"] and len(fallback["ranking"]) == 4
    assert in_workers["kept_fp32"] == fallback["kept_fp32"]
    assert "outlier_digits/features.3/int8 ok" in result.stderr  # progress as each candidate finishes


def test_unmet_budget_exits_1_and_says_so(cli, project):
    result = cli("quantize", "--per-tensor", "--observer", "minmax", "--activations", "static", "--min-sqnr", "80",
                 "--max-fp32-layers", "1", expect=1)
    assert "was not met" in result.stderr
    fallback = json.loads((project / "build/deploytool/quantized/quantize.json").read_text())["fallback"]
    assert not fallback["met"] and len(fallback["kept_fp32"]) == 1


def test_keep_fp32_patterns_and_unknown_names(cli, project):
    cli("quantize", "--per-tensor", "--observer", "minmax", "--keep-fp32", "features.[03]", "--keep-fp32",
        "type:Linear")
    # A typo is a config error that lists the nearest module names.
    result = cli("diagnose", "--keep-fp32", "featurs.3", expect=2)
    assert "featurs.3" in result.stderr and "features.3" in result.stderr


def test_keep_fp32_improves_output(project, digit_images):
    from deploytool import api
    from deploytool.capture import capture
    from deploytool.config import Observer, QuantConfig, load_config
    from deploytool.quantize.session import Session

    config = load_config(project)
    prepared = api.prepare(config)
    captured = capture(prepared.loaded.module, prepared.example_inputs)
    recipe = QuantConfig(per_channel=False, observer=Observer.MINMAX, keep_fp32=("features.[03]",))
    kept = Session(prepared, captured, recipe).evaluate()
    plain = Session(prepared, captured, QuantConfig(per_channel=False, observer=Observer.MINMAX)).evaluate()
    assert kept.sqnr_db > plain.sqnr_db + 15


@pytest.mark.slow
def test_ray_sensitivity_ranking_matches_in_process(project, local_ray):
    from deploytool.config import Observer, QuantConfig
    from deploytool.scale.executor import RayExecutor
    from deploytool.quantize.diagnose import candidates, sensitivity
    from deploytool.scale.jobs import evaluate_candidates

    session = _session(project, QuantConfig(per_channel=False, observer=Observer.MINMAX))
    names = candidates(session)
    on_ray = sensitivity(session, names, evaluate_many=partial(evaluate_candidates, RayExecutor()))
    in_process = sensitivity(session, names)
    assert [s.name for s in in_process[:2]] == ["features.0", "features.3"], in_process
    assert on_ray == in_process


def test_a_failed_candidate_job_names_its_layer(project):
    from deploytool.config import QuantConfig
    from deploytool.errors import CandidateError
    from deploytool.scale.executor import LocalExecutor
    from deploytool.quantize.diagnose import sensitivity
    from deploytool.scale.jobs import evaluate_candidates

    session = _session(project, QuantConfig())
    # Measuring features.0 alone keeps the misspelt layer in fp32: that job fails, and the ranking with it.
    with pytest.raises(CandidateError, match=r"layer features\.0 could not be measured: ConfigError: .*featurs\.3"):
        sensitivity(session, ["features.0", "featurs.3"], evaluate_many=partial(evaluate_candidates, LocalExecutor()))


@pytest.mark.parametrize("observer,extra", [
    ("histogram", ()),
    pytest.param("minmax", ("--symmetric-activations",), marks=pytest.mark.slow, id="minmax-symmetric"),
    pytest.param("moving-average", (), marks=pytest.mark.slow, id="moving-average"),
    pytest.param("percentile", (), marks=pytest.mark.slow, id="percentile"),
])
def test_each_observer_end_to_end(cli, tmp_path, digit_images, observer, extra):
    cli("quantize", "--model", "zoo:digits", "--calib", str(digit_images), "--calib-limit", "64",
        "--holdout", "0.2", "--observer", observer, *extra)
    cli("export", "--target", "android")
    out = tmp_path / "build/deploytool"
    recorded = json.loads((out / "quantized/quantize.json").read_text())["recipe"]
    exported = json.loads((out / "android/report.json").read_text())
    assert recorded["observer"] == exported["quantization"]["observer"] == observer
    assert recorded["activation_range"] == ("symmetric" if extra else "asymmetric")
    assert exported["passed"]


def test_calibration_warnings_on_degenerate_and_noise_inputs(digit_images):
    from deploytool.config import Color, Preprocess
    from deploytool.data.images import image_folder
    from deploytool.quantize.sufficiency import input_warnings

    real = image_folder(digit_images, Preprocess(color=Color.L))
    assert input_warnings(s for _, s in real.samples()) == []
    zeros = [(np.zeros((1, 8, 8), np.float32),)] * 8
    assert "all zeros" in input_warnings(zeros)[0]
    noise = [(np.random.default_rng(i).normal(size=(1, 8, 8)).astype(np.float32),) for i in range(16)]
    assert "uncorrelated" in input_warnings(noise)[0]


def test_ranges_and_clipping_are_measured(project):
    from deploytool.config import Observer, QuantConfig
    from deploytool.quantize import sufficiency

    session = _session(project, QuantConfig(observer=Observer.MINMAX))
    calibrated = session.calibrate()
    layer_of = sufficiency.observer_layers(calibrated.prepared)
    assert {"input", "features.2", "classifier"} <= set(layer_of.values())
    assert calibrated.half_ranges and set(calibrated.half_ranges) <= set(calibrated.ranges())
    shares = sufficiency.clipped_shares(calibrated, layer_of, (session.inputs(a) for a in session.held_out))
    assert shares and all(0 <= s < 0.05 for s in shares.values())  # same distribution: little clipping
    # Three times the input range clips everywhere the calibration did not reach.
    doubled = sufficiency.clipped_shares(calibrated, layer_of, (tuple(t * 3 for t in session.inputs(a))
                                                                for a in session.held_out))
    assert doubled["input"] > 0.1 and sufficiency.clipping_warnings(doubled)


def _session(project: Path, recipe):
    """A diagnosis Session on the project's model (prepared and captured) for `recipe`."""
    from deploytool import api
    from deploytool.config import load_config

    return api.prepare(load_config(project)).session(recipe)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in_cell = tag == "td"

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data.strip())


def _parse_html(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page
