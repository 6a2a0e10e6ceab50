"""deploytool.npz: the one .npz layout of runtime inputs and outputs, recorded runs and references."""
from __future__ import annotations

import io

import numpy as np
import pytest

from deploytool.npz import pack, unpack


def test_groups_of_uneven_samples_come_back_as_they_went_in():
    eager = [[np.arange(6, dtype=np.float32).reshape(2, 3)], [np.ones(4, np.float32), np.zeros((), np.int64)]]
    int8 = [[np.full(3, -1.5, np.float32)]]
    with np.load(io.BytesIO(pack({"eager": eager, "int8": int8}, key=np.array("3f2a")))) as saved:
        for group, samples in (("eager", eager), ("int8", int8)):
            back = unpack(saved, group)
            assert [len(s) for s in back] == [len(s) for s in samples]
            for got, sent in zip(back, samples):
                for a, b in zip(got, sent):
                    assert a.dtype == b.dtype and np.array_equal(a, b)
        assert str(saved["key"]) == "3f2a"
        with pytest.raises(KeyError):  # what readers of a file from an older layout catch, then rebuild
            unpack(saved, "outputs")
