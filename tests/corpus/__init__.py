"""Models from other projects, written the way those projects write them (see README.md in this folder).

Each `<name>/` folder holds `model.py` (a `build()` factory, as a user would hand to `--model model.py:build`),
`data.py` (`write_data(folder) -> path`: realistic calibration data) and, where the model has a task, `metric.py`
(`metric(outputs, targets) -> float in [0, 1]`, the `--metric` contract). `expected.json` holds what each
artifact's verdict should be.
"""
