"""HitSave's PEP 517 build backend: maturin's, with one rule in front.

A source build (an sdist, or `pip install ./bindings/python`) compiles Rust.
When cargo is missing or too old, maturin would download a toolchain by itself
(and the first build then fails on a version it cannot find, with a long
traceback). This backend instead stops with one line that says what to
install. Wheels need none of this: `pip install hitsave-*.whl` runs no build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

# Never let maturin fetch a toolchain: a user's machine gets only what they chose.
os.environ["MATURIN_NO_INSTALL_RUST"] = "1"

import maturin  # noqa: E402  (after the variable above, which maturin reads at call time)

#: The oldest Rust the workspace builds with (`rust-version` in Cargo.toml).
MINIMUM_RUST = (1, 95)


def _require_rust() -> None:
    minimum = ".".join(map(str, MINIMUM_RUST))
    cargo = shutil.which("cargo")
    found = None
    if cargo is not None:
        try:
            out = subprocess.run(
                [cargo, "--version"], capture_output=True, text=True, timeout=60
            ).stdout
            m = re.search(r"cargo (\d+)\.(\d+)", out)
            found = (int(m.group(1)), int(m.group(2))) if m else None
        except (OSError, subprocess.SubprocessError):
            found = None
    if found is not None and found >= MINIMUM_RUST:
        return
    if cargo is None:
        what = "no cargo on PATH"
    elif found is None:
        what = f"`{cargo} --version` did not answer"
    else:
        what = f"found cargo {found[0]}.{found[1]}"
    sys.stderr.write(
        f"hitsave: building from source needs Rust {minimum} or newer ({what}): install it from "
        "https://rustup.rs (or your system's packages) and retry, or install a prebuilt "
        "hitsave wheel instead (docs/python.md)\n"
    )
    sys.stderr.flush()
    raise SystemExit(1)


def get_requires_for_build_wheel(config_settings=None):
    _require_rust()
    return maturin.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings=None):
    _require_rust()
    return maturin.get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _require_rust()
    return maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    _require_rust()
    return maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _require_rust()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _require_rust()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


# An sdist is made from a checkout, which has Rust: maturin's hooks as they are.
get_requires_for_build_sdist = maturin.get_requires_for_build_sdist
build_sdist = maturin.build_sdist
