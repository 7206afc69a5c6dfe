"""The Python snippets of README.md, docs/ and the docstrings use names and keywords the
package has.

Running the snippets would take minutes (most fit a model with NUTS), and some are fragments
of a page. This test parses each page's ``python`` code blocks in order and, without running
them, resolves every name imported from `numpyro_parallel`, every attribute taken from an
imported module or class (``sts.Sum``, ``ssm.kalman_filter``) and every keyword argument
passed to such a callable. A renamed function, class or argument then fails here rather than
in a reader's session. A docstring's snippet is read in its module's namespace (where
`LinearGaussianSSM` or `sts` need no import).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import re
import textwrap
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)
PACKAGE = "numpyro_parallel"
MODULES = [
    p for p in sorted((ROOT / PACKAGE).rglob("*.py")) if BLOCK.search(p.read_text())
]  # whose docstrings hold a snippet


def page_code(page: pathlib.Path) -> list[str]:
    """The page's (or module's) ``python`` blocks, dedented; of a console session
    (``>>>``) only the input lines."""
    blocks = [textwrap.dedent(code) for _, code in BLOCK.findall(page.read_text())]
    return [
        "".join(line[4:] for line in code.splitlines(True) if line[:4] in (">>> ", "... "))
        if code.startswith(">>> ")
        else code
        for code in blocks
    ]


def module_namespace(path: pathlib.Path) -> dict[str, Any]:
    """The globals of the package module at ``path``, and `sts` and `ssm`."""
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    names = dict(vars(importlib.import_module(name.removesuffix(".__init__"))))
    return names | {n: importlib.import_module(f"{PACKAGE}.{n}") for n in ("sts", "ssm")}


def _bind_imports(node: ast.AST, names: dict[str, Any], problems: list[str]) -> None:
    """Bind the names an import statement takes from the package."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] != PACKAGE:
                continue
            module = importlib.import_module(alias.name)
            if alias.asname:
                names[alias.asname] = module
            else:
                names[PACKAGE] = importlib.import_module(PACKAGE)
    elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
        module = importlib.import_module(node.module)
        for alias in node.names:
            if hasattr(module, alias.name):
                names[alias.asname or alias.name] = getattr(module, alias.name)
            else:
                try:  # a submodule not imported by its package
                    value = importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    problems.append(f"line {node.lineno}: {node.module} has no {alias.name!r}")
                    continue
                names[alias.asname or alias.name] = value


def _resolve(node: ast.AST, names: dict[str, Any], problems: list[str]) -> Any:
    """The package object an expression ``a.b.c`` names, or None if it is not one."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, names, problems)
        if owner is None or not (inspect.ismodule(owner) or inspect.isclass(owner)):
            return None
        if not hasattr(owner, node.attr):
            problems.append(f"line {node.lineno}: {owner.__name__} has no {node.attr!r}")
            return None
        return getattr(owner, node.attr)
    return None


def _check_call(node: ast.Call, names: dict[str, Any], problems: list[str]) -> None:
    function = _resolve(node.func, names, problems)
    if function is None or not callable(function):
        return
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        return  # *args or **kwargs: the call's arguments are not all spelled out
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    placeholders = [None] * len(node.args)
    try:
        signature.bind_partial(*placeholders, **{k.arg: None for k in node.keywords})
    except TypeError as error:
        problems.append(f"line {node.lineno}: {ast.unparse(node.func)}(...): {error}")


def snippet_problems(code: list[str], names: dict[str, Any] | None = None) -> list[str]:
    """What in a page's blocks (run in order, starting from ``names``) names nothing the
    package has."""
    names = {} if names is None else dict(names)
    problems: list[str] = []
    for index, block in enumerate(code):
        try:
            tree = ast.parse(block)
        except SyntaxError as error:
            problems.append(f"block {index + 1}: {error}")
            continue
        found: list[str] = []
        for node in ast.walk(tree):  # imports first: a block may use a name it imports below
            _bind_imports(node, names, found)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                _check_call(node, names, found)
            elif isinstance(node, ast.Attribute):
                _resolve(node, names, found)
        problems += [f"block {index + 1}, {p}" for p in dict.fromkeys(found)]
    return problems


def test_pages_and_docstrings_have_snippets():
    assert sum(len(page_code(p)) for p in PAGES) >= 20
    assert len(MODULES) >= 3


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_snippets_name_what_the_package_has(page):
    assert snippet_problems(page_code(page)) == []


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_docstring_snippets_name_what_the_package_has(path):
    assert snippet_problems(page_code(path), module_namespace(path)) == []


def test_the_check_finds_a_renamed_function_class_and_keyword():
    code = [
        "from numpyro_parallel import sts\n"
        "from numpyro_parallel.ssm import kalman_filtr\n"
        "sts.Summ([sts.LocalLevel()])\n"
        "sts.forecast(model, samples, y, horizon=3, rng_key=key, observation_nois=False)\n"
        "sts.Seasonal(period=12, num_harmonic=2)\n"
    ]
    problems = snippet_problems(code)
    assert len(problems) == 4, problems
    for expected in ("kalman_filtr", "Summ", "observation_nois", "num_harmonic"):
        assert any(expected in p for p in problems), (expected, problems)
