"""Check the import contracts in pyproject.toml ([tool.importlinter]) against the code.

edgesmith installs ``compress/``, ``convert/``, ``runtime/`` and ``zoo/`` as subpackages of
``edgesmith`` through setuptools' ``package-dir``; the import graph builder walks one
folder per package, so this script lays out the installed tree (copies of the sources,
in a temporary folder) and runs the contracts on it.

Usage: python tools/check_imports.py   (exit status 0 when every contract holds)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def installed_layout(dest: Path) -> None:
    """Copy every package's .py files to where an installed edgesmith would have them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in config["package-dir"].items():
        target = dest.joinpath(*package.split("."))
        for source in (ROOT / folder).rglob("*.py"):
            relative = source.relative_to(ROOT / folder)
            # A subpackage mapped elsewhere is copied from its own folder, not from here.
            if relative.parts[0] != "__pycache__":
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / relative)


def main() -> int:
    from importlinter.cli import lint_imports

    with tempfile.TemporaryDirectory(prefix="edgesmith-imports-") as tmp:
        installed_layout(Path(tmp))
        sys.path.insert(0, tmp)
        for name in [m for m in sys.modules if m == "edgesmith" or m.startswith("edgesmith.")]:
            del sys.modules[name]
        # The linter puts the working folder first on sys.path: make that the laid-out tree.
        os.chdir(tmp)
        return lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)


if __name__ == "__main__":
    sys.exit(main())
