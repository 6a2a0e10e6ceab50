"""torchvision through the compatibility helper, with a CPU-only torch and a CUDA-linked torchvision."""
import pytest
import torch

from deploytool.errors import MissingDependencyError
from deploytool.torchvision_compat import extension_failure, import_torchvision


def test_classification_models_import_and_run():
    models = import_torchvision().models
    out = models.squeezenet1_1(weights=None).eval()(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 1000)


def test_ops_that_need_the_extension_name_the_cause():
    tv = import_torchvision()
    if extension_failure() is None:
        pytest.skip("torchvision's C++ extension loads on this machine, so nms works")
    with pytest.raises(MissingDependencyError, match="needs the C.. extension, which is unavailable"):
        tv.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5)
