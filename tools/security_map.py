"""Build the requirement -> test map of ``docs/security.md`` from the tags in ``tests/``.

Every test names the security requirements it checks in a comment (``# R24``, ``# R8 R69``,
``# R5 R7 (issue 7 item 1)``). This script reads ``tests/**/*.py`` (it never imports them) and
prints one Markdown row per requirement, ``| R# | level | short title | tests |``, in the format
of the table under "Requirements and their tests".

Which comment belongs to which test:

- a comment from a test function's first decorator to its last line (the ``def`` line's
  ``) -> None:  # R7``, the body's first lines, anywhere in the body) belongs to that test;
  test methods of a class are named ``Class::test_name``;
- a comment on a module-level constant (inside it, or in the comment lines right above it)
  belongs to every test that uses the constant (``HOSTILE_NEXT``, a list of hostile inputs);
- a comment in a section header (a line that starts with ``# --``, such as
  ``# -- resend cooldown (R15) ----``) belongs to the tests below it, up to the next section
  header, that have no tag from the two rules above.

Strings (docstrings, xfail reasons) are not read: a tag is a comment.

A strict xfail (``@pytest.mark.xfail(..., strict=True)`` on the test) is marked "(xfail)"; a
``pytest.param(..., id="x", marks=pytest.mark.xfail(..., strict=True))`` among the test's
``parametrize`` values (inline, or a module-level list the decorator names) is marked
"(xfail for `x`)".

The short titles and MUST/SHOULD levels come from the table already in ``docs/security.md``;
a requirement missing there takes its level and first sentence from
``SECURITY-REQUIREMENTS.md`` (``../shared/`` beside the repository by default). ``UNTAGGED``
below lists tests that check a requirement without naming it; they are checked to exist.

Usage::

    python tools/security_map.py            # print the rows; a summary goes to stderr
    python tools/security_map.py --write    # replace the rows in docs/security.md
    python tools/security_map.py --check    # exit 1 if docs/security.md is out of date
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = Path("docs/security.md")
REQUIREMENTS = ROOT.parent / "shared" / "SECURITY-REQUIREMENTS.md"

#: ``R24`` in a comment (``R16.4`` is R16); not part of a longer word or number.
TAG = re.compile(r"(?<![A-Za-z0-9])R([1-9][0-9]?)(?![0-9])")
#: A row of the map in the doc: number, level, short title.
ROW = re.compile(r"^\| R([0-9]+) \| (MUST|SHOULD) \| (.+?) \| ")
#: A requirement in SECURITY-REQUIREMENTS.md: ``**R7 [MUST]** Each identifier ...``.
SOURCE = re.compile(r"^\*\*R([0-9]+) \[(MUST|SHOULD)\]\*\* (.+)$")
HEADER = "| R | Level | Requirement (short) | Tests (`file`: `test`) |"


@dataclass(frozen=True)
class Untagged:
    """Tests that check (part of) a requirement without naming it, and a remark."""

    tests: tuple[str, ...] = ()  # "tests/path.py::test_name", checked to exist
    remark: str = ""  # one sentence, without the full stop
    partly: bool = True  # "check part of it" rather than "check it"


UNTAGGED: Mapping[int, Untagged] = {
    58: Untagged(
        (
            "tests/integrations/test_flask.py::test_session_cookie_flags_in_testing",
            "tests/integrations/test_flask.py::"
            "test_cookies_are_secure_and_host_prefixed_outside_debug_and_testing",
            "tests/integrations/test_django.py::test_session_cookie_flags",
            "tests/integrations/test_django.py::test_insecure_cookie_only_when_configured",
        ),
        partly=False,
    ),
    60: Untagged(
        (
            "tests/integrations/test_django.py::test_hostile_next_is_refused",
            "tests/integrations/test_django.py::test_same_origin_next_is_kept",
            "tests/integrations/test_django.py::test_hostile_next_lands_on_the_home_page",
            "tests/integrations/test_flask.py::test_hostile_next_after_sign_in_goes_home",
        ),
        partly=False,
    ),
    70: Untagged(
        (
            "tests/stores/test_sql.py::test_purge_expired_is_bounded_by_batch",
            "tests/stores/test_postgres.py::test_purge_expired_is_bounded_by_batch",
            "tests/stores/test_postgres.py::test_auth_purge_expired_runs_in_bounded_batches",
        ),
        remark="Also `StoreContract::test_purge_expired` (in `portalauth.testing`, run by "
        "`tests/stores/test_contract.py` and the server stores' contract classes)",
        partly=False,
    ),
    71: Untagged(
        (
            "tests/stores/test_sql.py::test_schema_version_is_recorded_once",
            "tests/stores/test_sql.py::test_newer_schema_version_is_refused",
            "tests/stores/test_postgres.py::test_schema_is_created_once_with_postgres_types",
            "tests/stores/test_postgres.py::test_newer_schema_version_is_refused",
        ),
        remark="No down-migration exists or is tested",
    ),
    72: Untagged(
        (
            "tests/test_auth.py::test_a_broken_strategy_fails_closed",
            "tests/test_auth.py::test_check_attempt_plugin_can_veto",
            "tests/test_plugins.py::test_raising_or_non_json_session_claims_fail_closed",
        ),
    ),
}


@dataclass
class Test:
    """One test function, its tags and its strict xfails."""

    path: str
    name: str
    tags: set[int] = field(default_factory=set)
    xfail: bool = False
    xfail_ids: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.path}::{self.name}"

    def label(self) -> str:
        if self.xfail:
            return f"`{self.name}` (xfail)"
        if self.xfail_ids:
            return f"`{self.name}` (xfail for {', '.join(f'`{i}`' for i in self.xfail_ids)})"
        return f"`{self.name}`"


def tags_in(text: str, known: int) -> set[int]:
    return {n for n in map(int, TAG.findall(text)) if 1 <= n <= known}


def dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def is_strict_xfail(node: ast.expr) -> bool:
    """``pytest.mark.xfail(..., strict=True)``, or a list or tuple holding one."""
    if isinstance(node, ast.List | ast.Tuple):
        return any(is_strict_xfail(element) for element in node.elts)
    return (
        isinstance(node, ast.Call)
        and dotted(node.func).endswith("mark.xfail")
        and any(
            kw.arg == "strict" and isinstance(kw.value, ast.Constant) and kw.value.value is True
            for kw in node.keywords
        )
    )


def param_values(
    node: ast.expr, constants: Mapping[str, ast.expr], depth: int = 0
) -> Iterator[ast.expr]:
    """The values of a ``parametrize`` argument: a literal list, a module-level name, ``*name``,
    or a comprehension over one (every element of its source: an over-approximation)."""
    if depth > 10:
        return
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        for element in node.elts:
            if isinstance(element, ast.Starred):
                yield from param_values(element.value, constants, depth + 1)
            else:
                yield element
    elif isinstance(node, ast.Name) and node.id in constants:
        yield from param_values(constants[node.id], constants, depth + 1)
    elif isinstance(node, ast.GeneratorExp | ast.ListComp):
        yield from param_values(node.generators[0].iter, constants, depth + 1)


def xfail_ids(decorator: ast.expr, constants: Mapping[str, ast.expr]) -> list[str]:
    """The ids of the ``pytest.param`` values of a ``parametrize`` decorator marked strict xfail."""
    if not (
        isinstance(decorator, ast.Call) and dotted(decorator.func).endswith("mark.parametrize")
    ):
        return []
    values = decorator.args[1] if len(decorator.args) > 1 else None
    for kw in decorator.keywords:
        if kw.arg == "argvalues":
            values = kw.value
    found: list[str] = []
    for value in param_values(values, constants) if values is not None else ():
        if not (isinstance(value, ast.Call) and dotted(value.func).endswith("param")):
            continue
        keywords = {kw.arg: kw.value for kw in value.keywords}
        marks = keywords.get("marks")
        if marks is None or not is_strict_xfail(marks):
            continue
        given = keywords.get("id")
        if isinstance(given, ast.Constant) and isinstance(given.value, str):
            found.append(given.value)
        else:
            found.append(ast.unparse(value.args[0]) if value.args else "?")
    return found


Function = ast.FunctionDef | ast.AsyncFunctionDef


def functions(tree: ast.Module) -> Iterator[tuple[str, Function]]:
    """Module-level test functions, and test methods of classes (``Class::test_name``)."""
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        prefix = f"{node.name}::" if isinstance(node, ast.ClassDef) else ""
        for member in members:
            if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                member.name.startswith("test")
            ):
                yield prefix + member.name, member


def scan_file(path: Path, root: Path, known: int) -> list[Test]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    comments = [
        (token.start[0], token.start[1], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    sections = [
        (line, tags_in(text, known))
        for line, col, text in comments
        if col == 0 and text.startswith("# --")
    ]
    constants: dict[str, ast.expr] = {}
    constant_tags: dict[str, set[int]] = {}
    source_lines = source.splitlines()
    comment_lines = {line: text for line, _, text in comments}
    #: Lines that hold nothing but a comment.
    alone = {line: text for line, col, text in comments if not source_lines[line - 1][:col].strip()}
    for node in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if not isinstance(target, ast.Name) or value is None:
            continue
        constants[target.id] = value
        # Its own comments, and the comment block right above it (not a section header).
        first = node.lineno
        while first - 1 in alone and not alone[first - 1].startswith("# --"):
            first -= 1
        text = " ".join(
            comment_lines[line]
            for line in range(first, (node.end_lineno or node.lineno) + 1)
            if line in comment_lines
        )
        if tagged := tags_in(text, known):
            constant_tags[target.id] = tagged

    relative = path.relative_to(root).as_posix()
    tests: list[Test] = []
    for name, node in functions(tree):
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = node.end_lineno or node.lineno
        test = Test(relative, name)
        for line, _, text in comments:
            if start <= line <= end:
                test.tags |= tags_in(text, known)
        for used in ast.walk(node):
            if isinstance(used, ast.Name) and used.id in constant_tags:
                test.tags |= constant_tags[used.id]
        if not test.tags:
            above = [tags for line, tags in sections if line < start]
            if above:
                test.tags = set(above[-1])
        for decorator in node.decorator_list:
            test.xfail = test.xfail or is_strict_xfail(decorator)
            test.xfail_ids.extend(xfail_ids(decorator, constants))
        tests.append(test)
    return tests


def scan(root: Path, known: int) -> list[Test]:
    tests: list[Test] = []
    for path in sorted((root / "tests").rglob("*.py")):
        tests.extend(scan_file(path, root, known))
    return tests


def titles_from_doc(text: str) -> dict[int, tuple[str, str]]:
    return {int(m[1]): (m[2], m[3]) for m in map(ROW.match, text.splitlines()) if m}


def titles_from_requirements(path: Path) -> dict[int, tuple[str, str]]:
    if not path.is_file():
        return {}
    found: dict[int, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = SOURCE.match(line)
        if m:
            sentence = re.split(r"(?<=[a-z)`*])[.:](?:\s|$)", m[3], maxsplit=1)[0].rstrip(":")
            found[int(m[1])] = (m[2], sentence if len(sentence) <= 100 else sentence[:97] + "...")
    return found


def files_and_names(refs: Sequence[str]) -> str:
    """``tests/a.py::x``, ``tests/a.py::y``, ``tests/b.py::z`` -> ```a::x`, `::y`; `b::z```."""
    by_file: dict[str, list[str]] = defaultdict(list)
    for ref in refs:
        path, name = ref.split("::", 1)
        by_file[path].append(name)
    return "; ".join(
        ", ".join([f"`{path}::{names[0]}`", *(f"`::{name}`" for name in names[1:])])
        for path, names in by_file.items()
    )


def untagged_text(number: int, tagged: set[str], every: set[str], covered: bool) -> str:
    note = UNTAGGED.get(number)
    if note is None:
        return ""
    for ref in note.tests:
        if ref not in every:
            print(f"warning: UNTAGGED[{number}] names {ref}, which does not exist", file=sys.stderr)
    refs = [ref for ref in note.tests if ref in every and ref not in tagged]
    parts = []
    if refs:
        lead = (
            "Also untagged"
            if covered
            else "Untagged tests that check " + ("part of it" if note.partly else "it")
        )
        parts.append(f"{lead}: {files_and_names(refs)}")
    if note.remark:
        parts.append(note.remark)
    return " ".join(f"{part}." for part in parts)


def rows(
    tests: Sequence[Test], titles: Mapping[int, tuple[str, str]], known: int
) -> tuple[list[str], list[int]]:
    every = {t.ref for t in tests}
    uncovered: list[int] = []
    lines: list[str] = []
    for number in range(1, known + 1):
        level, title = titles.get(number, ("MUST", "(no title)"))
        naming = [t for t in tests if number in t.tags]
        if naming:
            by_file: dict[str, list[Test]] = defaultdict(list)
            for test in naming:
                by_file[test.path].append(test)
            cell = "<br>".join(
                f"`{path}`: "
                + ", ".join(t.label() for t in sorted(by_file[path], key=lambda t: t.name))
                for path in sorted(by_file)
            )
            extra = untagged_text(number, {t.ref for t in naming}, every, covered=True)
            if extra:
                cell += "<br>" + extra
        else:
            uncovered.append(number)
            cell = f"**not yet covered** (no test names R{number})."
            extra = untagged_text(number, set(), every, covered=False)
            if extra:
                cell += " " + extra
        lines.append(f"| R{number} | {level} | {title} | {cell} |")
    return lines, uncovered


def replace_rows(doc: str, new_rows: Sequence[str]) -> str:
    lines = doc.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.rstrip("\n") == HEADER)
    first = at + 2  # the header and its separator
    last = first
    while last < len(lines) and lines[last].startswith("| R"):
        last += 1
    return "".join([*lines[:first], *(row + "\n" for row in new_rows), *lines[last:]])


def summary(tests: Sequence[Test], uncovered: Sequence[int], known: int) -> str:
    covered = known - len(uncovered)
    with_xfail = sorted({n for t in tests if t.xfail or t.xfail_ids for n in t.tags})
    names = ", ".join(f"R{n}" for n in uncovered) or "none"
    opened = ", ".join(f"R{n}" for n in with_xfail) or "none"
    return (
        f"{known} requirements: {covered} named by at least one test ({len(with_xfail)} of them by "
        f"a strict xfail: {opened}); {len(uncovered)} not yet covered: {names}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: here)")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="replace the rows in the doc")
    action.add_argument("--check", action="store_true", help="exit 1 if the doc is out of date")
    args = parser.parse_args(argv)

    doc_path = args.root / DOC
    doc = doc_path.read_text(encoding="utf-8")
    titles = {**titles_from_requirements(args.requirements), **titles_from_doc(doc)}
    known = max(titles, default=73)
    tests = scan(args.root, known)
    new_rows, uncovered = rows(tests, titles, known)
    print(summary(tests, uncovered, known), file=sys.stderr)

    if args.write:
        doc_path.write_text(replace_rows(doc, new_rows), encoding="utf-8")
    elif args.check:
        if replace_rows(doc, new_rows) != doc:
            print(
                f"{DOC} is out of date: run python tools/security_map.py --write", file=sys.stderr
            )
            return 1
    else:
        print("\n".join(new_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
