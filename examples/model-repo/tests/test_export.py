"""The models still export and match eager on held-out digits (and the committed baseline).

`pytest` runs this test; `pytest --deploytool` adds one test per model x target of deploytool.toml.
"""


def test_digitnet_ships_to_android(deploy):
    (case,) = deploy.check("digitnet", target="android")
    assert case.reports[0].artifact_path.name == "model.pte"
