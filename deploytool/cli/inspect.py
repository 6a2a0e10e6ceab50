"""`deploytool inspect`."""
from __future__ import annotations

from pathlib import Path

import click

from deploytool.cli.options import command_with_examples, print_json


@command_with_examples("""  deploytool inspect build/deploytool/android/model.pte
  deploytool inspect build/deploytool/server/model.int8.onnx --json
""")("inspect")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON on stdout.")
def inspect(artifact: Path, as_json: bool) -> None:
    """Delegated vs non-delegated ops, quantize/dequantize boundaries and the largest tensors of a .pte or .onnx.

    For a .pte, the ops inside each XNNPACK delegate are read from the delegate's own graph; for a .onnx,
    the ops are listed after onnxruntime's graph optimizations, which is what its CPU kernels run.
    """
    from deploytool.report.inspect import inspect_artifact

    found = inspect_artifact(artifact)
    if as_json:
        print_json(found.to_dict())
    else:
        click.echo(found.text())
