"""The package's layering, read from its imports (``ast``, so imports inside functions count too):
library modules never import the command modules, and no two subpackages import each other."""

import ast
from pathlib import Path

import priors3d

SRC = Path(priors3d.__file__).parent
COMMANDS = {"priors3d.commands", "priors3d.cli"}


def imports(path: Path) -> set[str]:
    """The priors3d modules that ``path`` imports (absolute, with relative imports resolved)."""
    module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("priors3d")}


def unit(name: str) -> str:
    """``priors3d.fields.render`` -> ``fields``: the subpackage (or top-level module) a module belongs to."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def graph() -> dict[str, set[str]]:
    return {str(p.relative_to(SRC)): imports(p) for p in sorted(SRC.rglob("*.py"))}


def test_library_modules_never_import_commands():
    offenders = {f: sorted(i for i in names if any(i == c or i.startswith(c + ".") for c in COMMANDS))
                 for f, names in graph().items() if not f.startswith(("commands/", "cli.py"))}
    assert not {f: n for f, n in offenders.items() if n}


def test_no_two_subpackages_import_each_other():
    edges = {}
    for f, names in graph().items():
        source = unit("priors3d." + f.removesuffix(".py").replace("/", "."))
        for name in names:
            target = unit(name)
            if target not in (source, "priors3d"):
                edges.setdefault(source, set()).add(target)
    both = sorted({tuple(sorted((a, b))) for a, targets in edges.items() for b in targets if a in edges.get(b, ())})
    assert not both, f"subpackages that import each other: {both}"


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The parser resolves relative imports, so a library module's ``from ..commands import x`` counts."""
    module = tmp_path / "priors3d" / "fields" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from ..commands import fit\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path / "priors3d")
    assert "priors3d.commands" in imports(module)
