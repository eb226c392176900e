"""Write the locks: the exact versions of the project's dependencies, read from the installed
distributions' metadata (so neither the project itself nor anything installed by hand gets in).

    .venv/bin/python -m support.lock runtime > requirements.lock      # with hashes
    .venv/bin/python -m support.lock dev > requirements-dev.lock

``requirements.lock`` is what the image and ``make run`` install, with ``--require-hashes``:
every runtime dependency, transitively, with the SHA-256 of its wheel for CPython 3.11 on Linux
x86_64 and aarch64 (the image's platforms), fetched with ``pip download``.
``requirements-dev.lock`` adds the dev dependencies, versions only. CI runs ``pip-audit`` on
both (``.github/workflows/ci.yml``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Final

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

PROJECT: Final = "klaviyo-destination"
#: The image's platforms (python:3.11-slim, Debian 12 with glibc 2.36, on amd64 and arm64).
ARCHES: Final = ("x86_64", "aarch64")
#: Every manylinux tag that glibc accepts, newest first, as pip in the image ranks them.
GLIBC_MINORS: Final = range(36, 16, -1)
PYTHON_VERSION: Final = "3.11"


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    marker: Marker | None = requirement.marker
    if marker is None:
        return True
    return any(marker.evaluate({"extra": extra}) for extra in extras or {""})


def closure(project: str = PROJECT, extras: tuple[str, ...] = ()) -> dict[str, str]:
    """Canonical name → installed version of every dependency of ``project[extras]``."""
    found: dict[str, str] = {}
    pending = [(project, frozenset(extras))]
    while pending:
        name, wanted = pending.pop()
        dist = metadata.distribution(name)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if not _applies(requirement, wanted):
                continue
            key = canonicalize_name(requirement.name)
            if key in found:
                continue
            found[key] = metadata.version(requirement.name)
            pending.append((requirement.name, frozenset(requirement.extras)))
    found.pop(canonicalize_name(project), None)
    return found


def wheel_hashes(pins: dict[str, str]) -> dict[str, set[str]]:
    """Canonical name → SHA-256 of each wheel pip picks for the image's platforms."""
    hashes: dict[str, set[str]] = defaultdict(set)
    for arch in ARCHES:
        tags = [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS]
        tags += [f"manylinux2014_{arch}"] + ([f"manylinux1_{arch}"] if arch == "x86_64" else [])
        platforms = [option for tag in tags for option in ("--platform", tag)]
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run(  # noqa: S603 -- pip, with our pins
                [
                    sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", *platforms,
                    "--python-version", PYTHON_VERSION, "--implementation", "cp",
                    "--dest", folder,
                    *(f"{name}=={version}" for name, version in sorted(pins.items())),
                ],
                check=True,
            )  # fmt: skip
            for wheel in Path(folder).glob("*.whl"):
                name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
                hashes[name].add(hashlib.sha256(wheel.read_bytes()).hexdigest())
    return hashes


def runtime_lock() -> str:
    pins = closure()
    hashes = wheel_hashes(pins)
    lines = [
        "# klaviyo-destination's runtime dependencies (transitive), exact, with wheel hashes for",
        "# CPython 3.11 on Linux x86_64 and aarch64. Installed by the image and `make run` with",
        "# pip install --require-hashes. Regenerate after a dependency change:",
        "#   .venv/bin/python -m support.lock runtime > requirements.lock",
    ]
    for name, version in sorted(pins.items()):
        digests = sorted(hashes.get(name, ()))
        if not digests:
            raise SystemExit(f"no wheel of {name}=={version} for Linux {ARCHES}")
        lines.append(f"{name}=={version} \\")
        lines.extend(f"    --hash=sha256:{d}" + (" \\" if i < len(digests) - 1 else "")
                     for i, d in enumerate(digests))  # fmt: skip
    return "\n".join(lines) + "\n"


def dev_lock() -> str:
    lines = [
        "# klaviyo-destination's runtime and dev dependencies (transitive), exact versions.",
        "# Regenerate: .venv/bin/python -m support.lock dev > requirements-dev.lock",
        "# Audited in CI: pip-audit --requirement requirements-dev.lock --no-deps --disable-pip",
    ]
    lines += [f"{name}=={version}" for name, version in sorted(closure(extras=("dev",)).items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    kinds = {"runtime": runtime_lock, "dev": dev_lock}
    if len(argv) != 1 or argv[0] not in kinds:
        sys.stderr.write("usage: python -m support.lock runtime|dev\n")
        return 2
    sys.stdout.write(kinds[argv[0]]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
