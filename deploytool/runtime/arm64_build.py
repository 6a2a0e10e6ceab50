"""Build the arm64 `deploytool_runner` bundle that arm64.py runs under qemu-user.

The same C++ runner as the x86 one (sources in `native/`, built by native_build.py) is cross-compiled with
Debian's aarch64 g++ against the C++ runtime inside the aarch64 `executorch` wheel of the *installed* version
(`lib/libexecutorch*.so` with the XNNPACK backend and its NEON / dot-product / i8mm / SME kernels, headers, CMake
config). The wheel comes from the package index with `pip download`; neither torch nor Python runs on the ARM side.

A bundle is everything `qemu-aarch64 -L SYSROOT` needs to run the runner, in the native runner's cache root:

    <cache root>/aarch64-linux-gnu/
      wheels/executorch-1.5.1-...-manylinux_2_28_aarch64.whl     the downloaded wheel (kept: rebuilds need no network)
      executorch-1.5.1/executorch/{lib,include,share}            unpacked from it (the runner's RUNPATH points here)
      <key>/bin/deploytool_runner                                 key: runner sources, executorch version, g++, wheel
      <key>/sysroot/lib/                                          the target's ld.so, libc, libm, libstdc++, libgcc_s
      <key>/bundle.json                                           what went in, for `setup` and the report

Nothing here imports torch, executorch or numpy.

    >>> bundle = build_arm64_bundle()
    >>> bundle.runner.name, bundle.executorch_version
    ('deploytool_runner', '1.5.1')
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploytool.runtime.native_build import (
    NativeBuildError,
    NativeToolchainMissing,
    RUNNER_NAME,
    file_lock,
    build_runner,
    default_cache_root,
)

TRIPLE = "aarch64-linux-gnu"
# What Debian 12 (and 13) call the pieces: the cross g++ pulls in binutils, libc6-dev-arm64-cross and
# libstdc++-N-dev-arm64-cross; qemu-user-static is one static binary per guest CPU (qemu-aarch64-static).
APT_PACKAGES = ("g++-aarch64-linux-gnu", "qemu-user-static")
APT_INSTALL = "apt-get install --no-install-recommends " + " ".join(APT_PACKAGES)
# The aarch64 wheels' platform tags, newest first (1.5.1 ships manylinux_2_28); pip takes any of them.
WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
WHEEL_ENV = "DEPLOYTOOL_ARM64_WHEEL"  # a local aarch64 executorch wheel instead of `pip download` (offline)
CXX_ENV = "DEPLOYTOOL_ARM64_CXX"  # another aarch64 C++ compiler than aarch64-linux-gnu-g++
# The wheel's parts the runner needs; the Python extension modules and the rest stay in the zip.
_WHEEL_PARTS = ("executorch/lib/", "executorch/include/", "executorch/share/")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CrossToolchain:
    """The aarch64 C++ compiler and where it keeps the target's C and C++ libraries."""

    cxx: Path
    version: str  # first line of `g++ --version`: part of the cache key
    readelf: Path

    def target_file(self, name: str) -> Path | None:
        """A file of the target's libraries (`libc.so.6`), as the compiler finds it when linking."""
        out = _output([str(self.cxx), f"-print-file-name={name}"]).strip()
        path = Path(out)
        return path.resolve() if path.is_absolute() and path.exists() else None


@dataclass(frozen=True)
class Arm64Bundle:
    """A built arm64 runner and what it needs at run time."""

    runner: Path  # the aarch64 deploytool_runner
    sysroot: Path  # qemu's -L: lib/ holds the target's loader and C/C++ libraries
    executorch_lib: Path  # the wheel's libexecutorch*.so (the runner's RUNPATH)
    executorch_version: str
    toolchain: str  # `aarch64-linux-gnu-g++ --version`, first line
    wheel: str  # the wheel's file name

    def size_bytes(self) -> int:
        """Bytes needed to run: the runner, the wheel's runtime libraries and the copied system libraries."""
        files = [self.runner, *self.executorch_lib.glob("*.so*"), *(self.sysroot / "lib").iterdir()]
        return sum(f.stat().st_size for f in files if f.is_file())


def _output(cmd: list[str], timeout_s: float = 60) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def installed_executorch_version() -> str:
    """The installed executorch's version (read from its metadata, not imported): the wheel to build against."""
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        raise NativeToolchainMissing("the arm64 runner is built for the installed executorch, and none is installed",
                                     hint="pip install executorch") from None


def find_toolchain() -> CrossToolchain:
    """The aarch64 cross compiler ($DEPLOYTOOL_ARM64_CXX, else aarch64-linux-gnu-g++) with the target's libc and
    libstdc++; NativeToolchainMissing names the missing piece and the apt-get line that installs it."""
    wanted = os.environ.get(CXX_ENV) or f"{TRIPLE}-g++"
    cxx = shutil.which(wanted)
    if cxx is None:
        raise NativeToolchainMissing(f"the arm64 runner needs the aarch64 C++ cross compiler; {wanted} was not found",
                                     hint=APT_INSTALL)
    version = _output([cxx, "--version"]).splitlines()
    readelf = shutil.which(f"{TRIPLE}-readelf") or shutil.which("readelf")
    if not version or readelf is None:
        raise NativeToolchainMissing(f"the aarch64 cross toolchain at {cxx} is incomplete (no version or readelf)",
                                     hint=APT_INSTALL)
    toolchain = CrossToolchain(Path(cxx), version[0].strip(), Path(readelf))
    missing = [name for name in ("libc.so.6", "ld-linux-aarch64.so.1", "libstdc++.so", "libstdc++.so.6")
               if toolchain.target_file(name) is None]
    if missing:
        raise NativeToolchainMissing(
            f"the aarch64 cross compiler {cxx} finds no target {', '.join(missing)} "
            "(arm64 glibc / libstdc++ for cross builds)",
            hint=APT_INSTALL + "   (brings libc6-dev-arm64-cross and libstdc++-12-dev-arm64-cross)")
    return toolchain


def _find_wheel(version: str, wheels: Path) -> Path | None:
    local = os.environ.get(WHEEL_ENV)
    if local:
        path = Path(local).expanduser()
        if not path.is_file() or "aarch64" not in path.name or not path.name.startswith(f"executorch-{version}-"):
            raise NativeToolchainMissing(
                f"${WHEEL_ENV} names {path}, not an aarch64 wheel of executorch {version} (the installed version)",
                hint=f"pip download executorch=={version} --no-deps --only-binary=:all: "
                     f"--platform {WHEEL_PLATFORMS[0]} -d DIR; then set {WHEEL_ENV} to the wheel in DIR")
        return path.resolve()
    found = sorted(wheels.glob(f"executorch-{version}-*aarch64*.whl")) if wheels.is_dir() else []
    return found[-1] if found else None


def download_wheel(version: str, wheels: Path, *, progress: Progress | None = None, timeout_s: float = 600) -> Path:
    """The aarch64 executorch wheel of `version` ($DEPLOYTOOL_ARM64_WHEEL, one downloaded before, else
    `pip download` from the package index) in `wheels`."""
    have = _find_wheel(version, wheels)
    if have is not None:
        return have
    wheels.mkdir(parents=True, exist_ok=True)
    # Any CPython tag will do (only the C++ runtime is used): this interpreter's first, then one 1.5 ships.
    pythons = dict.fromkeys([f"{sys.version_info.major}.{sys.version_info.minor}", "3.11"])
    tried = []
    for python in pythons:
        cmd = [sys.executable, "-m", "pip", "download", f"executorch=={version}", "--no-deps",
               "--only-binary=:all:", "--python-version", python, "--disable-pip-version-check", "--quiet"]
        for platform in WHEEL_PLATFORMS:
            cmd += ["--platform", platform]
        if progress:
            progress(f"downloading the aarch64 executorch {version} wheel (python {python}, ~18 MB)")
        with tempfile.TemporaryDirectory(prefix="deploytool-wheel-", dir=wheels) as tmp:
            try:
                proc = subprocess.run([*cmd, "-d", tmp], capture_output=True, text=True, timeout=timeout_s,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                tried.append(f"python {python}: pip download timed out after {timeout_s:g}s")
                continue
            got = sorted(Path(tmp).glob("executorch-*.whl"))
            if proc.returncode == 0 and got:
                target = wheels / got[0].name
                os.replace(got[0], target)
                return target
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
            tried.append(f"python {python}: " + (lines[-1] if lines else f"pip exited {proc.returncode}"))
    raise NativeToolchainMissing(
        f"could not download the aarch64 executorch {version} wheel: " + "; ".join(tried),
        hint=f"{' '.join(cmd[2:])} -d DIR   (then set {WHEEL_ENV}=DIR/<the wheel> to use it offline)")


def unpack_wheel(wheel: Path, dest: Path) -> Path:
    """Unpack the wheel's C++ runtime (lib/, include/, share/) into `dest`; return the `executorch` folder."""
    root = dest / "executorch"
    marker = dest / ".unpacked"
    if marker.is_file() and marker.read_text() == wheel.name:
        return root
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / f".{dest.name}.lock"):
        if marker.is_file() and marker.read_text() == wheel.name:
            return root
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            with zipfile.ZipFile(wheel) as zf:
                names = [n for n in zf.namelist() if n.startswith(_WHEEL_PARTS)]
                if not any(n.startswith("executorch/lib/libexecutorch") for n in names):
                    raise NativeToolchainMissing(
                        f"{wheel.name} ships no C++ runtime (executorch/lib/libexecutorch*.so)",
                        hint="the arm64 runner needs executorch >= 1.5, whose Linux wheels bundle it")
                zf.extractall(tmp, names)
            for lib in (tmp / "executorch" / "lib").glob("*.so*"):
                lib.chmod(0o755)
            (tmp / ".unpacked").write_text(wheel.name)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)  # a half-unpacked tree is never seen under `dest`
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root


def _toolchain_file(path: Path, toolchain: CrossToolchain) -> Path:
    cc = toolchain.cxx.with_name(toolchain.cxx.name.replace("g++", "gcc"))
    text = "\n".join([
        "# Written by deploytool (runtime/arm64_build.py): cross-compile deploytool_runner for aarch64 Linux.",
        "set(CMAKE_SYSTEM_NAME Linux)",
        "set(CMAKE_SYSTEM_PROCESSOR aarch64)",
        f'set(CMAKE_CXX_COMPILER "{toolchain.cxx}")',
        *([f'set(CMAKE_C_COMPILER "{cc}")'] if cc.is_file() else []),
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "",
    ])
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def _needed(toolchain: CrossToolchain, elf: Path) -> list[str]:
    out = _output([str(toolchain.readelf), "-d", str(elf)])
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def _fill_sysroot(sysroot: Path, toolchain: CrossToolchain, runner: Path, et_lib: Path) -> None:
    """Copy the target's loader and every system library the runner and the wheel's libraries load into
    sysroot/lib, so that a run needs qemu and nothing of the cross packages."""
    marker = sysroot / ".complete"
    if marker.is_file():
        return
    shipped = {p.name for p in et_lib.glob("*.so*")}
    todo = ["ld-linux-aarch64.so.1"]
    for elf in [runner, *sorted(et_lib.glob("*.so*"))]:
        todo += _needed(toolchain, elf)
    tmp = Path(tempfile.mkdtemp(prefix=".sysroot-", dir=sysroot.parent))
    try:
        (tmp / "lib").mkdir()
        done: set[str] = set()
        while todo:
            name = todo.pop()
            if name in done or name in shipped:
                continue
            done.add(name)
            source = toolchain.target_file(name)
            if source is None:
                raise NativeToolchainMissing(
                    f"the arm64 runner needs the target library {name}, which {toolchain.cxx.name} does not find",
                    hint=APT_INSTALL)
            shutil.copyfile(source, tmp / "lib" / name)  # the file itself, not a symlink into /usr
            (tmp / "lib" / name).chmod(0o755)
            todo += _needed(toolchain, source)
        # An empty loader cache: the guest's ld.so would otherwise read the host's /etc/ld.so.cache.
        (tmp / "etc").mkdir()
        (tmp / "etc" / "ld.so.cache").write_bytes(b"")
        (tmp / ".complete").write_text("\n".join(sorted(done)) + "\n")
        tmp.chmod(0o755)
        if sysroot.exists():
            shutil.rmtree(sysroot)
        os.replace(tmp, sysroot)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _built_before(root: Path, wheel: str, toolchain: str) -> bool:
    """Whether some bundle in `root` was built from this wheel with this compiler (then nothing is compiled)."""
    for info in root.glob("*/bundle.json"):
        with contextlib.suppress(OSError, ValueError):
            built = json.loads(info.read_text())
            if built.get("wheel") == wheel and built.get("toolchain") == toolchain:
                return True
    return False


def arm64_cache_root(cache_dir: Path | None = None) -> Path:
    """Where arm64 bundles live: `aarch64-linux-gnu/` in the native runner's cache root."""
    return (Path(cache_dir) if cache_dir is not None else default_cache_root()).expanduser().resolve() / TRIPLE


def build_arm64_bundle(
    cache_dir: Path | None = None,
    *,
    force: bool = False,
    jobs: int = 2,
    progress: Progress | None = None,
    timeout_s: float = 900.0,
) -> Arm64Bundle:
    """Build (once; cached) the arm64 runner bundle for the installed executorch and return it.

    First use downloads the aarch64 wheel (~18 MB) and cross-compiles the runner (15-50 s); later calls only check
    the cache. Raises NativeToolchainMissing (missing compiler, target libraries, wheel; its `hint` is the command
    that installs it) or NativeBuildError (the compiler's error).
    """
    version = installed_executorch_version()
    toolchain = find_toolchain()
    root = arm64_cache_root(cache_dir)
    wheel = download_wheel(version, root / "wheels", progress=progress)
    et_root = unpack_wheel(wheel, root / f"executorch-{version}")
    toolchain_file = _toolchain_file(root / "toolchain" / f"{TRIPLE}.cmake", toolchain)
    key_extra = f"triple={TRIPLE};cxx={toolchain.cxx};{toolchain.version};wheel={wheel.name}"
    started = time.monotonic()
    if progress and not _built_before(root, wheel.name, toolchain.version):
        progress(f"building the arm64 runner for executorch {version} with {toolchain.version} (once: 10-50 s)")
    runner = build_runner(root, jobs=jobs, force=force, timeout_s=timeout_s, executorch_root=et_root,
                          toolchain_file=toolchain_file, key_extra=key_extra)
    key_dir = runner.parent.parent
    with file_lock(key_dir / ".lock"):
        if force and (key_dir / "sysroot").exists():
            shutil.rmtree(key_dir / "sysroot")
        _fill_sysroot(key_dir / "sysroot", toolchain, runner, et_root / "lib")
    bundle = Arm64Bundle(runner=runner, sysroot=key_dir / "sysroot", executorch_lib=et_root / "lib",
                         executorch_version=version, toolchain=toolchain.version, wheel=wheel.name)
    info = key_dir / "bundle.json"
    if force or not info.is_file():
        with contextlib.suppress(OSError):  # informative only
            info.write_text(json.dumps({
                "executorch": version, "wheel": wheel.name, "toolchain": toolchain.version,
                "runner": str(runner), "size_bytes": bundle.size_bytes(),
                "build_seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n")
    return bundle


__all__ = [
    "APT_INSTALL", "APT_PACKAGES", "Arm64Bundle", "CrossToolchain", "NativeBuildError", "NativeToolchainMissing",
    "RUNNER_NAME", "TRIPLE", "arm64_cache_root", "build_arm64_bundle", "download_wheel", "find_toolchain",
    "installed_executorch_version", "unpack_wheel",
]
