"""Print ``requirements.lock``: the exact installed versions of what ``pip install -e '.[dev]'``
brings in (the project's runtime and dev dependencies, transitively), read from the installed
distributions' metadata, so the lock holds neither the project itself nor whatever else was
installed into the venv by hand.

    .venv/bin/python -m reliability.lock > requirements.lock

CI runs ``pip-audit`` on the result (``.github/workflows/ci.yml``).
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "klaviyo-destination"
EXTRAS = ("dev",)


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    marker: Marker | None = requirement.marker
    if marker is None:
        return True
    return any(marker.evaluate({"extra": extra}) for extra in extras or {""})


def closure(project: str = PROJECT, extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
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


def main() -> int:
    sys.stdout.write(
        "# Exact versions of klaviyo-destination's runtime and dev dependencies (transitive).\n"
        "# Regenerate: .venv/bin/python -m reliability.lock > requirements.lock\n"
        "# Audited in CI: pip-audit --requirement requirements.lock --no-deps --disable-pip\n"
    )
    for name, version in sorted(closure().items()):
        sys.stdout.write(f"{name}=={version}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
