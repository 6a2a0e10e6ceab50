"""`deploytool setup`: install or build, once, what an optional check needs."""
from __future__ import annotations

import click

from deploytool.cli.options import command_with_examples


@click.group("setup", epilog="\b\nExamples:\n  deploytool setup arm64\n",
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def setup() -> None:
    """Prepare an optional check once (it is also done on first use, with progress)."""


@command_with_examples("""  deploytool setup arm64
  DEPLOYTOOL_QEMU_AARCH64=/opt/qemu-10/bin/qemu-aarch64 deploytool setup arm64   # a newer QEMU
""")("arm64")
def arm64() -> None:
    """Find qemu-aarch64, download the aarch64 ExecuTorch wheel of the installed version, cross-compile the
    runner against it (cached), and list the CPU profiles this QEMU runs right.

    Needs Debian's g++-aarch64-linux-gnu and qemu-user-static (the error says the apt-get line); after that,
    `deploytool check --arm64` runs every .pte on ARM's NEON, dot-product and i8mm kernels, without a phone.
    """
    from deploytool.runtime.arm64 import DEFAULT_PROFILES, PROFILES, default_profiles, ensure_arm64, profile_status
    from deploytool.report import human_size

    bundle, qemu, _ = ensure_arm64(None, progress=lambda line: click.echo(line, err=True))
    click.echo(f"qemu: {qemu.path} (QEMU {qemu.version_text})")
    click.echo(f"arm64 runner: {bundle.runner} (executorch {bundle.executorch_version}, {bundle.toolchain}; "
               f"{human_size(bundle.size_bytes())} with its libraries)")
    click.echo(f"default profiles ({', '.join(DEFAULT_PROFILES)} where QEMU has them): "
               f"{', '.join(default_profiles(qemu))}")
    for name, refused in profile_status(qemu).items():
        state = "runs" if refused is None else f"refused: {refused}"
        click.echo(f"  {name:<14} {PROFILES[name].kernels:<50} {state}")


setup.add_command(arm64)
