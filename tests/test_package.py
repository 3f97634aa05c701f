import os
import subprocess
import sys


def _thp_setting(env: dict) -> str:
    code = "import priors3d, os; print(os.environ['THP_MEM_ALLOC_ENABLE'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_turns_on_huge_pages_unless_the_environment_says_otherwise():
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    assert _thp_setting(env) == "1"
    assert _thp_setting({**env, "THP_MEM_ALLOC_ENABLE": "0"}) == "0"
