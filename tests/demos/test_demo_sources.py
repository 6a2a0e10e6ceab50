"""The demo apps' sources: syntax always, compile + fixture run where a compiler exists.

- every .kt/.kts/.swift file parses with the tree-sitter grammars (no ERROR/MISSING nodes);
- with `kotlinc` on PATH (e.g. Debian's `kotlin` package): compile android_demo/core and run its
  FixtureCheck against tests/demos/fixture.json;
- with `swift` on PATH: `swift test` in ios_demo/DemoCore against the same fixture;
- the runtime versions the apps pin match the installed executorch package.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess

import pytest
import tree_sitter
import tree_sitter_kotlin
import tree_sitter_swift

ROOT = pathlib.Path(__file__).resolve().parents[2]
ANDROID = ROOT / "android_demo"
IOS = ROOT / "ios_demo"
FIXTURE = ROOT / "tests" / "demos" / "fixture.json"
SKIP_DIRS = {"build", ".build", ".gradle", "DerivedData"}

GRAMMARS = {".kt": tree_sitter_kotlin, ".kts": tree_sitter_kotlin, ".swift": tree_sitter_swift}


def _sources() -> list[pathlib.Path]:
    files = [p for d in (ANDROID, IOS) for p in d.rglob("*")
             if p.suffix in GRAMMARS and not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    return sorted(files)


def _bad_nodes(node: tree_sitter.Node) -> list[str]:
    if not node.has_error:
        return []
    if node.is_error or node.is_missing:
        kind = "MISSING " + node.type if node.is_missing else "ERROR"
        return [f"{kind} at line {node.start_point[0] + 1}, column {node.start_point[1] + 1}"]
    return [msg for child in node.children for msg in _bad_nodes(child)]


def test_demo_sources_exist():
    names = {p.relative_to(ROOT).as_posix() for p in _sources()}
    assert "android_demo/app/src/main/kotlin/dev/deploytool/demo/android/MainActivity.kt" in names
    assert "android_demo/core/src/main/kotlin/dev/deploytool/demo/core/ImageMath.kt" in names
    assert "ios_demo/DemoCore/Package.swift" in names
    assert "ios_demo/DemoApp/Classifier.swift" in names


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_syntax(path: pathlib.Path):
    parser = tree_sitter.Parser(tree_sitter.Language(GRAMMARS[path.suffix].language()))
    tree = parser.parse(path.read_bytes())
    assert not tree.root_node.has_error, f"{path.relative_to(ROOT)}: " + "; ".join(_bad_nodes(tree.root_node))


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.skipif(shutil.which("kotlinc") is None or shutil.which("java") is None,
                    reason="kotlinc/java not on PATH (Debian: apt-get install kotlin)")
def test_kotlin_core_against_fixture(tmp_path: pathlib.Path):
    core = ANDROID / "core" / "src"
    jar = tmp_path / "core.jar"
    _run(["kotlinc", str(core / "main" / "kotlin"), str(core / "test" / "kotlin"),
          "-include-runtime", "-d", str(jar)])
    out = _run(["java", "-cp", str(jar), "dev.deploytool.demo.core.FixtureCheckKt", str(FIXTURE)])
    assert "fixture OK" in out.stdout


@pytest.mark.skipif(shutil.which("swift") is None, reason="no Swift toolchain on PATH")
def test_swift_core_against_fixture(tmp_path: pathlib.Path):
    env = dict(os.environ, DEPLOYTOOL_FIXTURE=str(FIXTURE))
    _run(["swift", "test", "--package-path", str(IOS / "DemoCore"), "--scratch-path", str(tmp_path)], env=env)


def test_apps_pin_the_installed_executorch():
    try:
        installed = importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("executorch not installed")
    installed = re.match(r"\d+\.\d+\.\d+", installed).group(0)
    gradle = (ANDROID / "app" / "build.gradle.kts").read_text()
    assert re.search(r'val executorchVersion = "([^"]+)"', gradle).group(1) == installed
    assert 'org.pytorch:executorch-android:$executorchVersion' in gradle
    assert f"branch: swiftpm-{installed}" in (IOS / "project.yml").read_text()
