"""The structure rules of docs/architecture.md that the import contracts cannot express."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(p for folder in PACKAGE_DIRS.values() for p in (REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_is_over_the_line_limit(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it by concern"


def test_every_front_module_is_protected_by_the_contracts() -> None:
    """A module added to the front (edgesmith/, not core) must be in the 'nothing below
    imports the front' contract, or the lower layers could start importing it unnoticed."""
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    front = next(c for c in contracts if c["name"] == "Nothing below the front imports it")
    listed = set(front["forbidden_modules"])
    present = {
        f"edgesmith.{p.stem if p.is_file() else p.name}"
        for p in (REPO / "edgesmith").iterdir()
        if (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
        or (p.is_dir() and (p / "__init__.py").exists() and p.name != "core")
    }
    assert present <= listed, f"add {sorted(present - listed)} to the contract in pyproject.toml"
    below = set(front["source_modules"])
    assert below == {"edgesmith.core", *(name for name in PACKAGE_DIRS if name != "edgesmith")}


def test_module_names_are_unique_across_packages() -> None:
    """Two modules of the same name in different packages read as one thing; keep them apart."""
    seen: dict[str, Path] = {}
    for path in _modules():
        # Command modules are named after the CLI command they implement (`edgesmith bench`).
        if path.stem in ("__init__", "__main__") or path.parent.name == "commands":
            continue
        assert path.stem not in seen, f"{path.relative_to(REPO)} and {seen[path.stem]}"
        seen[path.stem] = path.relative_to(REPO)
