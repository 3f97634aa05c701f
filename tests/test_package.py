"""The public API: subpackages reachable from ``import priors3d``, no side effects at import, and each
subpackage's ``__all__`` names things that exist, each defined once across the public API."""

import importlib
import os
import subprocess
import sys

import pytest

import priors3d

SUBPACKAGES = ["vn", "check", "so3", "engine", "runs", "metrics", "viz", "fields", "pointcloud", "shaping", "policy",
               "efem"]


def _run(code: str, env: dict) -> str:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_sets_no_environment_and_huge_pages_are_an_explicit_call():
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    assert _run("import priors3d, os; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))", env) == "None"
    on = "import priors3d, os; priors3d.use_huge_pages(); print(os.environ['THP_MEM_ALLOC_ENABLE'])"
    assert _run(on, env) == "1"
    assert _run(on, {**env, "THP_MEM_ALLOC_ENABLE": "0"}) == "0"


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackages_are_attributes_with_an_all_of_existing_names(name):
    module = getattr(priors3d, name)
    assert module is importlib.import_module(f"priors3d.{name}")
    assert module.__all__, f"priors3d.{name} has an empty __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"priors3d.{name}.__all__ names what it does not define: {missing}"


def test_public_names_are_unique_across_subpackages():
    owners = {}
    for name in SUBPACKAGES:
        module = getattr(priors3d, name)
        for public in module.__all__:
            obj = getattr(module, public)
            if getattr(obj, "__module__", "").startswith("priors3d"):
                owners.setdefault(public, set()).add(f"{obj.__module__}.{getattr(obj, '__qualname__', public)}")
    clashes = {n: sorted(o) for n, o in owners.items() if len(o) > 1}
    assert not clashes, f"one public name, several definitions: {clashes}"
