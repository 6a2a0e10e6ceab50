"""Loading: every spec kind, checkpoints by name, safe defaults."""
import inspect
import sys
import textwrap

import pytest
import torch

from deploytool.errors import ModelLoadError, UsageError
from deploytool.loading import load


def write_model_file(folder, body: str):
    path = folder / "mymodel.py"
    path.write_text("import torch\nfrom torch import nn\n\n" + textwrap.dedent(body))
    return path


def test_zoo_spec_gives_trained_model_inputs_and_preprocessing():
    loaded = load("zoo:digits")
    assert loaded.input_names == ("x",) and loaded.inputs[0].shape == (1, 1, 8, 8)
    assert loaded.labels[3] == "3"
    assert not loaded.module.training


def test_unknown_zoo_name_suggests():
    with pytest.raises(UsageError, match="Unknown zoo model 'digit'. Did you mean 'digits'"):
        load("zoo:digit")


def test_torchvision_spec_random_init_and_unknown_name():
    loaded = load("torchvision:squeezenet1_1")
    assert loaded.inputs[0].shape == (1, 3, 224, 224)
    assert loaded.labels[0] == "tench"  # ImageNet class names ship in torchvision's weight metadata
    with pytest.raises(UsageError, match="Did you mean 'resnet18'"):
        load("torchvision:resnet81")


def test_file_factory_returning_module_or_module_and_example(tmp_path):
    write_model_file(tmp_path, """
        class Net(nn.Module):
            def forward(self, image, scale):
                return image * scale

        def plain():
            return Net()

        def with_example():
            return Net(), (torch.zeros(1, 2, 3), torch.ones(1))
    """)
    assert load("mymodel.py:plain", base_dir=tmp_path).input_names == ("image", "scale")
    loaded = load("mymodel.py:with_example", base_dir=tmp_path)
    assert [i.shape for i in loaded.inputs] == [(1, 2, 3), (1,)]


def test_package_module_factory(tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text("from torch import nn\n\ndef make():\n    return nn.Linear(3, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(load("mypkg.nets:make").module, torch.nn.Linear)
    sys.modules.pop("mypkg.nets", None)


@pytest.mark.parametrize("body, spec, message", [
    ("def build():\n    raise RuntimeError('no GPU here')\n", "mymodel.py:build", "raised RuntimeError: no GPU here"),
    ("def build():\n    return 42\n", "mymodel.py:build", "returned int, not a torch.nn.Module"),
    ("def build():\n    return nn.Linear(2, 2)\n", "mymodel.py:biuld", "Did you mean 'build'"),
    ("import not_a_module\n", "mymodel.py:build", "Importing .*mymodel.py failed: ModuleNotFoundError"),
])
def test_factory_errors_name_the_spec(tmp_path, body, spec, message):
    write_model_file(tmp_path, body)
    with pytest.raises(ModelLoadError, match=message):
        load(spec, base_dir=tmp_path)


def test_import_error_hint_names_the_file_to_run(tmp_path):
    path = write_model_file(tmp_path, "import not_a_module\n")
    with pytest.raises(ModelLoadError) as error:
        load("mymodel.py:build", base_dir=tmp_path)
    assert f"Run `python {path.resolve()}`" in error.value.hint


def test_checkpoint_keys_are_reported_by_name(tmp_path):
    write_model_file(tmp_path, "def build():\n    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))\n")
    state = {"0.weight": torch.zeros(3, 4), "0.bias": torch.zeros(3), "2.weight": torch.zeros(2, 5),
             "extra.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "ckpt.pt")
    with pytest.raises(ModelLoadError) as error:
        load("mymodel.py:build", base_dir=tmp_path, weights="ckpt.pt")
    message = error.value.message
    assert "missing keys (1): 2.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "2.weight: checkpoint (2, 5) vs model (2, 3)" in message


def test_checkpoint_wrapped_and_dataparallel_prefixed_loads(tmp_path):
    write_model_file(tmp_path, "def build():\n    return nn.Linear(4, 3)\n")
    torch.manual_seed(0)
    source = torch.nn.Linear(4, 3)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3},
               tmp_path / "ckpt.pt")
    loaded = load("mymodel.py:build", base_dir=tmp_path, weights="ckpt.pt")
    assert torch.equal(loaded.module.weight, source.weight)


class Pickled:
    pass


def test_pickle_checkpoint_is_refused_unless_trusted(tmp_path):
    write_model_file(tmp_path, "def build():\n    return nn.Linear(4, 3)\n")
    torch.save({"state_dict": {"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}, "meta": Pickled()},
               tmp_path / "ckpt.pt")
    with pytest.raises(ModelLoadError, match="needs full pickle") as error:
        load("mymodel.py:build", base_dir=tmp_path, weights="ckpt.pt")
    assert "Pickled" in error.value.message
    assert "--trust-checkpoint" in error.value.hint
    assert load("mymodel.py:build", base_dir=tmp_path, weights="ckpt.pt", trust_checkpoint=True) is not None


def test_fingerprint_changes_with_weights():
    first = load("zoo:digits")
    before = first.fingerprint()
    with torch.no_grad():
        first.module.classifier.bias[0] += 1
    assert first.fingerprint() != before
    assert load("zoo:digits").fingerprint() == before


# A model file as users write it: a dataclass config under postponed annotations, classes and a helper defined
# in the file, and a neighbour module imported only when build() runs.
USER_MODEL = '''
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

SCALE = 0.5


@dataclass
class NetConfig:
    width: int = 8
    classes: int = 3


def squash(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x) * SCALE


class Net(nn.Module):
    def __init__(self, config: NetConfig):
        super().__init__()
        import user_layers

        self.body = user_layers.block(config.width)
        self.head = nn.Linear(config.width, config.classes)

    def forward(self, x):
        return self.head(squash(self.body(x)))


def build():
    torch.manual_seed(0)
    return Net(NetConfig()), torch.zeros(1, 8)
'''
USER_LAYERS = "from torch import nn\n\n\ndef block(width):\n    return nn.Sequential(nn.Linear(width, width), nn.ReLU())\n"


@pytest.fixture
def user_project(tmp_path):
    """tmp_path/project with model.py and its neighbour user_layers.py; forgets the modules they import after."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "model.py").write_text(USER_MODEL)
    (folder / "user_layers.py").write_text(USER_LAYERS)
    yield folder
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def test_user_model_file_loads_and_captures_strict(user_project):
    from deploytool.capture import capture

    loaded = load("model.py:build", base_dir=user_project)
    assert type(loaded.module).__name__ == "Net" and loaded.inputs[0].shape == (1, 8)
    assert capture(loaded.module, (torch.zeros(1, 8),)).method == "strict"
    # Named relatively or absolutely, loaded again: one model, one fingerprint (the quantize cache key).
    again = load(f"{user_project / 'model.py'}:build", base_dir=user_project.parent)
    assert again.fingerprint() == loaded.fingerprint()


def test_two_model_files_of_one_name_stay_two_modules(user_project, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.py").write_text("from torch import nn\n\n\nclass Other(nn.Module):\n    def forward(self, x):\n"
                                    "        return x + 1\n\n\ndef build():\n    return Other()\n")
    first = load("model.py:build", base_dir=user_project).module
    second = load("model.py:build", base_dir=other).module
    from deploytool.capture import capture

    for module in (first, second):
        assert sys.modules[type(module).__module__].__file__ == inspect.getfile(type(module))
        assert capture(module, (torch.zeros(1, 8),)).method == "strict"


README_MODEL = '''
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DigitConfig:
    channels: int = 4
    classes: int = 10


class DigitNet(nn.Module):
    def __init__(self, config: DigitConfig):
        super().__init__()
        self.conv = nn.Conv2d(1, config.channels, 3)
        self.head = nn.Linear(config.channels * 6 * 6, config.classes)

    def forward(self, x):
        return self.head(features(self.conv(x)))


def features(x: torch.Tensor) -> torch.Tensor:  # a module-level helper: strict export resolves it by module name
    return torch.flatten(torch.relu(x), 1)


def build():
    torch.manual_seed(0)
    return DigitNet(DigitConfig()), torch.zeros(1, 1, 8, 8)
'''


def test_readme_flow_on_a_user_model_file_captures_strict(cli, digit_images):
    """README, 'Using it on your model': quantize --model model.py:build --calib DIR, then export."""
    import json

    (cli.folder / "model.py").write_text(README_MODEL)
    quantized = cli("quantize", "--model", "model.py:build", "--calib", str(digit_images), "--calib-limit", "64")
    assert "captured strict" in quantized.stdout
    record = json.loads((cli.folder / "build/deploytool/quantized/quantize.json").read_text())
    assert record["capture_method"] == "strict"
    exported = cli("export", "--target", "android")
    assert "reusing the quantized program" in exported.stderr  # the replayed absolute spec: the same cache key
    report = json.loads((cli.folder / "build/deploytool/android/report.json").read_text())
    assert report["capture"] == {"method": "strict"}
