"""The suite on every Python the package claims, and the checks: ``nox -l`` lists the sessions.

``nox -s tests-3.10 tests-3.13`` runs the suite on the oldest and newest; ``nox`` alone runs
every session. Each Python is found by version: ``python3.X`` on PATH, else a pyenv (or uv,
or python-build-standalone) install of it, whose ``bin`` goes to the front of PATH for nox.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

#: The versions of ``requires-python`` and the classifiers, oldest first.
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: Where pyenv and uv install Pythons, when ``python3.X`` is not on PATH (pyenv's shims answer
#: only for the versions `pyenv global` names).
INSTALL_ROOTS = [
    Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions",
    Path.home() / ".local" / "share" / "uv" / "python",
]

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True


def _find(version: str) -> Path | None:
    """The ``bin`` folder of an installed CPython ``version`` (the newest patch release)."""
    candidates = [
        folder / "bin"
        for root in INSTALL_ROOTS
        if root.is_dir()
        for folder in root.iterdir()
        if folder.name.removeprefix("cpython-").startswith(f"{version}.")
        and (folder / "bin" / f"python{version}").exists()
    ]
    return max(candidates, key=lambda p: _patch(p.parent.name), default=None)


def _patch(name: str) -> int:
    digits = name.removeprefix("cpython-").split(".")[2].split("-")[0]
    return int(digits) if digits.isdigit() else 0


def _use_installed_pythons() -> None:
    """Put each version's ``bin`` on PATH when ``python3.X`` does not already answer there."""
    for version in PYTHONS:
        found = shutil.which(f"python{version}")
        if found and "shims" not in found:
            continue
        folder = _find(version)
        if folder is not None:
            os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ['PATH']}"


_use_installed_pythons()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, in parallel (pytest-xdist), with what the ``test`` extra installs."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session(python=PYTHONS[-1])
def ray(session: nox.Session) -> None:
    """docs/guides/ray.md's recipe, with Ray (not in the ``test`` extra: hundreds of MB)."""
    session.install("-e", ".[test,ray]")
    session.run(
        "pytest", "tests/test_doc_snippets.py", "-k", "ray", *session.posargs,
        env={"REMBG_ASYNC_REQUIRE_RAY": "1"},
    )  # fmt: skip


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff: the rules and the format; lint-imports: the layers in pyproject.toml."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports", "--no-cache")


@nox.session(python=PYTHONS[0])
def types(session: nox.Session) -> None:
    """mypy --strict and pyright (strict on tests/typing), on the oldest Python."""
    session.install("-e", ".[types]")
    session.run("mypy", "--strict", "rembg_async", "tests/typing", "pytest_rembg_async.py")
    session.run("pyright", "--pythonpath", session.virtualenv.location + "/bin/python")


@nox.session(python=PYTHONS[-1])
def docs(session: nox.Session) -> None:
    """The docs site builds with no warning (mkdocs --strict)."""
    session.install("-e", ".[docs]")
    site = session.create_tmp()
    session.run(
        "mkdocs", "build", "--strict", "--quiet", "--site-dir", site,
        env={"NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
