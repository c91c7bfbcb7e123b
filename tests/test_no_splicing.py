"""No text is spliced into a string that is then expanded: a static check over mta/.

The expander refuses a Tainted template, but Python's string operations
(``str.replace``, f-strings, ``+``, ``%``, ``.format``, ``.join``) return
plain ``str`` and so wash taint away.  Issue 9's high finding was exactly
that: ``text.replace("$pipe_addresses", address)`` before ``expand(text)``.
So, by construction: the template given to any expanding function must be
configuration text as it is (a name, an attribute, a constant, a subscript),
and a local variable passed as a template must never have been built by one
of those operations in the same function.  Data reaches an expansion only as
the value of a variable.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MTA = Path(__file__).resolve().parents[1] / "mta"

# Functions whose arguments include an expansion template, and the names their template parameter has.
EXPANDING = {"expand", "_expand", "expand_or_defer", "_expand_argument", "expand_option", "_expand_edit"}
TEMPLATE_PARAMETERS = {"text", "arg", "template"}
# Operations that build new text out of pieces.
BUILDING_METHODS = {"replace", "format", "join", "format_map"}


def template_positions() -> dict[str, set[int]]:
    """For each expanding function name, the argument positions that are templates, from every
    definition of that name in mta/ (a method's `self` not counted)."""
    positions: dict[str, set[int]] = {name: set() for name in EXPANDING}
    for path in MTA.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in EXPANDING:
                params = [a.arg for a in node.args.args]
                if params[:1] in (["self"], ["cls"]):
                    params = params[1:]
                positions[node.name] |= {i for i, p in enumerate(params) if p in TEMPLATE_PARAMETERS}
    return positions


def _builds_text(node: ast.AST) -> bool:
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in BUILDING_METHODS
    )


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _own_nodes(function: ast.AST):  # type: ignore[no-untyped-def]
    """The nodes of a function's own body, not those of functions nested in it (their own scope)."""
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


def _built_names(function: ast.AST) -> dict[str, int]:
    """Local names assigned in the function's own scope from text-building operations."""
    built: dict[str, int] = {}
    for node in _own_nodes(function):
        if isinstance(node, ast.Assign) and _builds_text(node.value):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    built[target.id] = node.lineno
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            built[node.target.id] = node.lineno
        elif isinstance(node, ast.AnnAssign) and node.value is not None and _builds_text(node.value):
            if isinstance(node.target, ast.Name):
                built[node.target.id] = node.lineno
    return built


def splices(path: Path, positions: dict[str, set[int]]) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))]
    for scope in scopes:
        built = _built_names(scope)
        for node in _own_nodes(scope):
            name = _called_name(node) if isinstance(node, ast.Call) else None
            if name not in EXPANDING:
                continue
            assert isinstance(node, ast.Call)
            for index, arg in enumerate(node.args):
                if index not in positions[name]:
                    continue
                where = f"{path}:{node.lineno}"
                if _builds_text(arg):
                    found.append(f"{where}: {ast.unparse(arg)!r} is built text passed to {name}()")
                elif isinstance(arg, ast.Name) and arg.id in built:
                    found.append(f"{where}: {arg.id!r} (built at line {built[arg.id]}) passed to {name}()")
    return found


def test_no_text_is_spliced_into_an_expansion_template() -> None:
    positions = template_positions()
    assert all(positions.values()), positions  # every expanding function was found, with its template
    problems = [problem for path in sorted(MTA.rglob("*.py")) for problem in splices(path, positions)]
    assert problems == []


def test_the_check_sees_the_shape_of_the_original_bug(tmp_path: Path) -> None:
    """The pipe transport's old code: a replace() on the command before it was expanded."""
    bad = tmp_path / "splice_example.py"
    bad.write_text(
        "def argv(o, item, env):\n"
        "    text = o.command\n"
        "    text = text.replace('$pipe_addresses', item.address)\n"
        "    return env.expand(text, item)\n"
        "def other(ctx, name):\n"
        "    return ctx.expand(f'${{lookup{{{name}}}lsearch{{/x}}}}')\n"
    )
    problems = splices(bad, template_positions())
    assert len(problems) == 2, problems


@pytest.mark.parametrize("operation", ["a + b", "'%s' % a", "a.format(b)", "''.join([a])", "f'{a}'"])
def test_each_building_operation_is_recognised(operation: str) -> None:
    assert _builds_text(ast.parse(operation, mode="eval").body)
