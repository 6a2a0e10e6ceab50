"""Child-process entry: `python -m deploytool.runtime.worker [MODULE ...]`.

Imports the MODULEs (the runtime), then reads one job from stdin, a JSON line
`["module:run", ARTIFACT, INPUTS.npz, OUTPUTS.npz]`, runs it and exits. No job (stdin closed) exits 0.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    for module in argv:
        importlib.import_module(module)
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    from deploytool.registry import Entry
    from deploytool.runtime import load_samples, save_samples

    runner, artifact, inputs_path, outputs_path = json.loads(line)
    samples = load_samples(Path(inputs_path))
    try:
        outputs = Entry(runner, runner).load()(Path(artifact), samples)
    except Exception as exc:  # report any runtime failure as one line for the parent
        print(f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}", file=sys.stderr)
        return 1
    save_samples(Path(outputs_path), outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
