"""Developer tasks: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s docs``,
``nox -s demo``, ``nox -s bench``. ``.ci/run`` runs the same sessions on a clean checkout."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = ["3.11"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The whole test suite (pass pytest options after ``--``)."""
    session.run("python", "-m", "pip", "install", "-q", "-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    session.run("python", "-m", "pip", "install", "-q", "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # docs/security.md's requirement map must match the tests' requirement tags.
    session.run("python", "tools/security_map.py", "--check")


@nox.session(python=False)
def typecheck(session: nox.Session) -> None:
    session.run("python", "-m", "pip", "install", "-q", "-e", ".[test]", "mypy")
    session.run("mypy", "--strict", "src")


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    session.run("python", "-m", "pip", "install", "-q", "mkdocs-material")
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/site")


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The Flask demo portal on http://127.0.0.1:5000 (``PORT=8000 nox -s demo`` to change)."""
    session.run("python", "-m", "pip", "install", "-q", "-e", ".[flask]")
    session.run("python", "examples/flask_portal/app.py", *session.posargs)


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Every benchmark: the main run, --scale and --rss (10 to 15 minutes); options after
    ``--`` replace ``--all`` (``nox -s bench -- --quick`` for a short run)."""
    session.run("python", "-m", "pip", "install", "-q", "-e", ".[bench,redis,postgres]")
    session.run("python", "benchmarks/run.py", *(session.posargs or ["--all"]))
