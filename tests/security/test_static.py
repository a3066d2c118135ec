"""Static gates (issue 7): no ``==`` / ``!=`` on secret-named values in the verifier modules
(R20), and no ``random`` anywhere in the library (R1)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import portalauth

SRC = Path(portalauth.__file__).resolve().parent

#: The modules that create, store or verify secrets.
VERIFIERS = sorted(
    [
        SRC / "challenges.py",
        SRC / "sessions.py",
        SRC / "keys.py",
        SRC / "tokens.py",
        SRC / "passwords.py",
        SRC / "links.py",
        *(SRC / "strategies").glob("*.py"),
    ]
)

#: A name that holds (or is derived from) a secret. ``pin`` and ``mac`` as whole words or
#: ``_``-separated parts, so ``mapping`` or ``machine`` do not count; the others anywhere.
SECRET_NAME = re.compile(
    r"code|token|digest|hash|secret|(?:^|_)pin(?:$|_|s$)|(?:^|_)h?mac(?:$|_)", re.IGNORECASE
)


def _name(node: ast.AST) -> str | None:
    """The name an operand is known by: a variable, an attribute, a subscript's base, or the
    function a call's result comes from (``len(token)`` counts as ``token``'s length only when
    the argument is named like a secret; see below)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _name(node.value)
    if isinstance(node, ast.Call):
        # The result of a call on a secret (``token.encode()``, ``digest.hex()``) is as secret
        # as the secret; ``len(x)`` and other builtins applied to it are not compared content.
        if isinstance(node.func, ast.Attribute):
            return _name(node.func.value)
        return None
    return None


def _harmless(node: ast.AST) -> bool:
    """A comparand that reveals nothing about a secret's content by timing: ``None``, a bool or
    a number (a state check, a length). String and bytes literals are *not* harmless: ``code ==
    "00000"`` would be a timing oracle on the code."""
    return isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, bool | int | float)
    )


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            if not isinstance(op, ast.Eq | ast.NotEq):
                continue
            left, right = operands[i], operands[i + 1]
            if _harmless(left) or _harmless(right):
                continue
            names = [n for n in (_name(left), _name(right)) if n and SECRET_NAME.search(n)]
            if names:
                where = f"{path.relative_to(SRC.parent)}:{node.lineno}"
                found.append(f"{where}: {ast.unparse(node)}")
    return found


def test_the_rule_finds_what_it_should() -> None:  # R20
    """The checker itself: these must be caught, those must pass."""
    caught = [
        "ok = code == typed",
        "ok = record.digest != candidate",
        "ok = token.encode() == other",
        "ok = stored_hash == expected",
        "ok = pin == '000000'",
        "ok = session_token[0] != x",
        "ok = hmac_value == y",
    ]
    passed = [
        "ok = code is None",
        "ok = len(token) != 43",
        "ok = mapping == other",
        "ok = record.state == 'live'",
        "ok = attempts == 5",
        "ok = digest == None",
    ]
    for source, expected in [(s, True) for s in caught] + [(s, False) for s in passed]:
        tree = ast.parse(source)
        compare = next(n for n in ast.walk(tree) if isinstance(n, ast.Compare))
        left, right = compare.left, compare.comparators[0]
        hit = not (_harmless(left) or _harmless(right)) and any(
            n and SECRET_NAME.search(n) for n in (_name(left), _name(right))
        )
        assert hit is expected, source


@pytest.mark.parametrize("path", VERIFIERS, ids=lambda p: str(p.relative_to(SRC)))
def test_no_equality_on_secret_named_values(path: Path) -> None:  # R20
    """Secrets are compared with ``hmac.compare_digest`` (``Keyring.matches``) only."""
    assert _offences(path) == []


def test_the_verifier_modules_exist() -> None:  # R20
    assert all(p.is_file() for p in VERIFIERS)
    assert {p.name for p in (SRC / "strategies").glob("*.py")} >= {
        "share_code.py",
        "contact_otp.py",
        "staff_pin.py",
        "magic_link.py",
        "password.py",
    }


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names.update(
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
    return names


def test_random_is_never_imported() -> None:  # R1
    """Every code, PIN, token and id comes from ``secrets``; ``random`` is not a CSPRNG."""
    offenders = {
        str(path.relative_to(SRC.parent)): sorted(
            n for n in _imports(path) if n == "random" or n.startswith("random.")
        )
        for path in sorted(SRC.rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}
