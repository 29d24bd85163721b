"""The training scripts share one run set-up (`models/runner/runsetup.py`): each main is the few steps that are
its own, its hooks are named objects, not closures."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("pretrain/colorize.py", "finetune/segment.py")
MAX_MAIN_LINES = 40


def main_of(script):
    tree = ast.parse((REPO / script).read_text())
    return next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main")


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_main_is_short(script):
    main = main_of(script)
    lines = main.end_lineno - main.lineno + 1
    assert lines < MAX_MAIN_LINES, f"{script}: main is {lines} lines; move its set-up into helpers or RunSetup"


@pytest.mark.parametrize("script", SCRIPTS)
def test_main_defines_no_closure_or_lambda_hooks(script):
    main = main_of(script)
    nested = [node.name for node in ast.walk(main) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              and node is not main]
    assert not nested, f"{script}: main defines {nested}; make hooks named classes at module level"
    hooks = [kw.value for node in ast.walk(main) if isinstance(node, ast.Call)
             for kw in node.keywords if kw.arg == "hooks"]
    assert not any(isinstance(node, ast.Lambda) for hook in hooks for node in ast.walk(hook))


@pytest.mark.parametrize("script", SCRIPTS)
def test_main_uses_the_shared_run_setup(script):
    calls = {node.func.id for node in ast.walk(main_of(script))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "RunSetup" in calls
    assert not calls & {"check_writable", "check_resume", "configure", "save_config", "wait_for_workers"}
