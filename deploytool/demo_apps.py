"""`deploytool export --into DEMO`: put the exported model where the demo app loads it from.

The Android demo reads `app/src/main/assets/`, the iOS demo `DemoApp/Model/` (a folder reference);
see android_demo/README.md and ios_demo/README.md.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from deploytool.errors import UsageError
from deploytool.fsutil import atomic_write_bytes

log = logging.getLogger("deploytool")

FILES = ("model.pte", "manifest.json")  # what both apps load


@dataclass(frozen=True)
class DemoApp:
    marker: str  # a file only that app has, to tell it from any other folder
    model_dir: str  # where the app loads FILES from


DEMO_APPS = {
    "android": DemoApp(marker="app/src/main/AndroidManifest.xml", model_dir="app/src/main/assets"),
    "ios": DemoApp(marker="project.yml", model_dir="DemoApp/Model"),
}


def demo_app(demo: Path, *, target: str) -> DemoApp:
    """The demo app layout for `target`, after checking that `demo` is that app (before any heavy work).

    >>> demo_app(Path("ios_demo"), target="ios").model_dir
    'DemoApp/Model'
    """
    app = DEMO_APPS.get(target)
    if app is None:
        raise UsageError(f"--into works for the demo apps of {', '.join(DEMO_APPS)}, not for target '{target}'.",
                         hint="Use --target android --into android_demo, or --target ios --into ios_demo.")
    if not (demo / app.marker).is_file():
        raise UsageError(f"{demo} is not the {target} demo app: it has no {app.marker}.",
                         hint=f"Pass this repository's {target}_demo/ folder, or copy {' and '.join(FILES)} from "
                              f"<output>/{target}/ into your app yourself.")
    return app


def install_into_demo(export_folder: Path, demo: Path, *, target: str) -> list[Path]:
    """Copy model.pte and manifest.json from `<output>/<target>/` into the demo app (atomically, each file).

    >>> install_into_demo(Path("build/deploytool/android"), Path("android_demo"), target="android")
    [PosixPath('android_demo/app/src/main/assets/model.pte'), PosixPath('android_demo/app/src/main/assets/manifest.json')]
    """
    app = demo_app(Path(demo), target=target)
    missing = [name for name in FILES if not (export_folder / name).is_file()]
    if missing:
        raise UsageError(f"{export_folder} has no {', '.join(missing)} to copy into {demo}.",
                         hint=f"Export the .pte: deploytool export --target {target} --format pte --into {demo}")
    copied = [atomic_write_bytes(demo / app.model_dir / name, (export_folder / name).read_bytes()) for name in FILES]
    log.info("copied %s into %s", ", ".join(FILES), demo / app.model_dir)
    return copied
