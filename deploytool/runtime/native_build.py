"""Build `deploytool_runner`, the native C++ runner for `.pte` files (native_runner.py runs it).

The runner (sources in `native/`) is compiled with CMake against the prebuilt
ExecuTorch runtime that the `executorch` wheel ships (`lib/libexecutorch*.so`,
`include/`, `share/cmake/executorch-config.cmake`), so it runs a program the way
an application embedding `executorch::extension::Module` would: same kernels,
same XNNPACK delegate, no Python in the process.

`build_runner()` builds it once per (sources, executorch version, wheel location)
into a cache folder. Nothing here imports torch or executorch.

    >>> build_runner(default_cache_root()).name
    'deploytool_runner'
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent / "native"
RUNNER_NAME = "deploytool_runner" + (".exe" if os.name == "nt" else "")
MIN_CMAKE = (3, 19)  # what the wheel's executorch-config.cmake demands


class NativeBuildError(RuntimeError):
    """The native runner could not be built (missing tool, headers, libraries or a compile error)."""

    def __init__(self, message: str, *, hint: str | None = None, log: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.log = log  # full configure/build output, when there was one


class NativeToolchainMissing(NativeBuildError):
    """What the build needs is not installed: cmake, a C++ compiler, or the wheel's C++ runtime."""


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deploytool" / "native"


def _executorch_root() -> Path:
    try:
        spec = importlib.util.find_spec("executorch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise NativeToolchainMissing(
            "cannot build the native runner: the 'executorch' package is not installed",
            hint="pip install executorch",
        )
    for location in spec.submodule_search_locations:
        if (Path(location) / "share" / "cmake" / "executorch-config.cmake").is_file():
            return Path(location).resolve()
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _executorch_version() -> str:
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _shared_lib(libdir: Path, base: str) -> Path | None:
    for suffix in (".so", ".dylib"):
        candidate = libdir / f"{base}{suffix}"
        if candidate.is_file():
            return candidate
    matches = sorted(libdir.glob(f"{base}.so.*")) + sorted(libdir.glob(f"{base}.*.dylib"))
    return matches[-1] if matches else None


def _check_wheel(root: Path) -> Path:
    """Return the CMake package dir; raise naming everything the wheel lacks."""
    version = _executorch_version()
    missing = []
    cmake_dir = root / "share" / "cmake"
    if not (cmake_dir / "executorch-config.cmake").is_file():
        missing.append(f"CMake package config {cmake_dir / 'executorch-config.cmake'}")
    header = root / "include" / "executorch" / "extension" / "module" / "module.h"
    if not header.is_file():
        missing.append(f"C++ headers ({header})")
    libdir = root / "lib"
    for base, what in (
        ("libexecutorch", "runtime library"),
        ("libexecutorch_kernels_optimized", "CPU kernel library"),
        ("libexecutorch_backend_xnnpack", "XNNPACK backend library"),
    ):
        if _shared_lib(libdir, base) is None:
            missing.append(f"{what} {libdir / base}.so")
    if missing:
        raise NativeToolchainMissing(
            f"cannot build the native runner: executorch {version} at {root} does not ship "
            + "; ".join(missing),
            hint="install an executorch wheel that bundles the C++ runtime (>= 1.5 on Linux x86-64)",
        )
    return cmake_dir


def _tool_version(exe: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def _find_cmake() -> str:
    candidates: list[str] = []
    if os.environ.get("DEPLOYTOOL_CMAKE"):
        candidates.append(os.environ["DEPLOYTOOL_CMAKE"])
    on_path = shutil.which("cmake")
    if on_path:
        candidates.append(on_path)
    # `pip install cmake` into a venv that is not activated.
    beside_python = Path(sys.executable).parent / ("cmake.exe" if os.name == "nt" else "cmake")
    if beside_python.is_file():
        candidates.append(str(beside_python))
    seen = []
    for exe in candidates:
        version = _tool_version(exe)
        seen.append(f"{exe} ({'.'.join(map(str, version)) if version else 'unusable'})")
        if version and version[:2] >= MIN_CMAKE:
            return exe
    need = ".".join(map(str, MIN_CMAKE))
    found = f"; found {', '.join(seen)}" if seen else ""
    raise NativeToolchainMissing(
        f"cannot build the native runner: cmake >= {need} is required{found}",
        hint="pip install cmake   (or apt-get install cmake)",
    )


def _find_cxx() -> str:
    env_cxx = os.environ.get("CXX")
    if env_cxx:
        exe = shutil.which(env_cxx.split()[0])
        if exe:
            return exe
        raise NativeToolchainMissing(
            f"cannot build the native runner: the C++ compiler named by $CXX ({env_cxx}) was not found"
        )
    for name in ("c++", "g++", "clang++"):
        exe = shutil.which(name)
        if exe:
            return exe
    raise NativeToolchainMissing(
        "cannot build the native runner: no C++ compiler found (looked for $CXX, c++, g++, clang++)",
        hint="apt-get install g++   (C++17 is needed)",
    )


def _source_files() -> list[Path]:
    files = sorted(
        p for p in SOURCE_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    if not any(p.name == "CMakeLists.txt" for p in files):
        raise NativeBuildError(f"the native runner sources are missing from {SOURCE_DIR}")
    return files


def _build_key(et_root: Path, extra: str = "") -> str:
    h = hashlib.sha256()
    for path in _source_files():
        h.update(path.relative_to(SOURCE_DIR).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    # The binary records the wheel's library directory as its RUNPATH, so a
    # different install location needs its own build even at the same version.
    h.update(f"executorch={_executorch_version()}\0root={et_root}\0".encode())
    h.update(f"platform={sys.platform}\0".encode())
    if extra:  # a cross build (arm64.py): the target triple, its compiler and the target's wheel
        h.update(f"extra={extra}\0".encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent builds of the same key (pytest-xdist, parallel CLI runs)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _run_step(cmd: list[str], log: list[str], what: str, timeout_s: float) -> None:
    log.append("$ " + " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or "") + (exc.stderr or "")
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        log.append(out)
        raise NativeBuildError(
            f"native runner {what} timed out after {timeout_s:g}s", log="\n".join(log)
        ) from None
    log.append(proc.stdout)
    log.append(proc.stderr)
    if proc.returncode != 0:
        text = (proc.stdout + "\n" + proc.stderr).strip().splitlines()
        # Prefer CMake's / the compiler's own error lines over the tail.
        errors = [ln for ln in text if re.search(r"error|Error|CMake Error", ln)]
        detail = "\n".join((errors or text)[-12:])
        raise NativeBuildError(
            f"native runner {what} failed (exit {proc.returncode}):\n{detail}",
            log="\n".join(log),
        )


def build_runner(
    cache_dir: Path | None = None,
    *,
    jobs: int = 2,
    force: bool = False,
    timeout_s: float = 900.0,
    executorch_root: Path | None = None,
    toolchain_file: Path | None = None,
    key_extra: str = "",
) -> Path:
    """Build `deploytool_runner` (Release) and return the path of the binary.

    The build lives in `<cache_dir or ~/.cache/deploytool/native>/<key>/`, where
    `key` hashes the C++ sources, the executorch version and the wheel's
    location; an existing binary there is reused unless `force` is set.
    Raises NativeBuildError naming what is missing (executorch wheel parts,
    cmake >= 3.19, a C++ compiler) or quoting the compile error.

    Cross builds (arm64.py) pass the unpacked executorch tree of the target's
    wheel as `executorch_root`, a CMake `toolchain_file` naming the cross
    compiler (then $CXX / c++ is not looked up), and `key_extra` (triple,
    compiler version, wheel) so they get a cache folder of their own.
    """
    et_root = Path(executorch_root).resolve() if executorch_root is not None else _executorch_root()
    cmake_pkg_dir = _check_wheel(et_root)
    key = _build_key(et_root, key_extra)
    work = Path(cache_dir) if cache_dir is not None else default_cache_root()
    work = work.expanduser().resolve() / key
    exe = work / "bin" / RUNNER_NAME
    if exe.is_file() and os.access(exe, os.X_OK) and not force:
        return exe

    cmake = _find_cmake()
    # A toolchain file names its own compiler; otherwise the host's C++ compiler.
    compiler_args = (
        [f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file}"] if toolchain_file is not None
        else [f"-DCMAKE_CXX_COMPILER={_find_cxx()}"]
    )
    work.mkdir(parents=True, exist_ok=True)
    with file_lock(work / ".lock"):
        if exe.is_file() and os.access(exe, os.X_OK) and not force:
            return exe  # built by someone else while we waited
        build_dir = work / "build"
        if force and build_dir.exists():
            shutil.rmtree(build_dir)
        log: list[str] = []
        started = time.monotonic()
        try:
            _run_step(
                [
                    cmake,
                    "-S", str(SOURCE_DIR),
                    "-B", str(build_dir),
                    "-DCMAKE_BUILD_TYPE=Release",
                    *compiler_args,
                    f"-Dexecutorch_DIR={cmake_pkg_dir}",
                ],
                log, "configure", timeout_s,
            )
            _run_step(
                [cmake, "--build", str(build_dir), "--config", "Release", "-j", str(max(1, jobs))],
                log, "build", timeout_s,
            )
        finally:
            log.append(f"# {time.monotonic() - started:.1f}s")
            (work / "build.log").write_text("\n".join(log))

        built = next(
            (p for p in (build_dir / RUNNER_NAME, build_dir / "Release" / RUNNER_NAME) if p.is_file()),
            None,
        )
        if built is None:
            raise NativeBuildError(
                f"native runner build reported success but produced no {RUNNER_NAME} in {build_dir}",
                log="\n".join(log),
            )
        exe.parent.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_name(exe.name + f".tmp{os.getpid()}")
        shutil.copy2(built, tmp)
        os.replace(tmp, exe)  # atomic: a reader never sees a half-written binary
    return exe
