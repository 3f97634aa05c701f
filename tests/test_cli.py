import pytest
import torch

from priors3d import cli


def test_every_command_resolves_to_a_function_of_one_config():
    import inspect
    import typing

    for group, commands in cli.COMMANDS.items():
        for command, target in commands.items():
            func = cli._resolve(target)
            (param,) = inspect.signature(func).parameters.values()
            config = typing.get_type_hints(func)[param.name]
            assert hasattr(config, "__dataclass_fields__"), f"{group} {command}: {config}"


def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["field", "fit", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "missing" in err and "Traceback" not in err


def test_unknown_group_and_command_name_the_choices():
    with pytest.raises(SystemExit, match="expected one of"):
        cli.main(["nope", "x"])
    with pytest.raises(SystemExit, match="expected one of"):
        cli.main(["field", "nope"])


def _config_types():
    import inspect
    import typing

    for group, commands in cli.COMMANDS.items():
        for command, target in commands.items():
            func = cli._resolve(target)
            (param,) = inspect.signature(func).parameters.values()
            yield f"{group} {command}", typing.get_type_hints(func)[param.name]


def test_every_command_has_threads():
    import dataclasses

    missing = [name for name, config in _config_types() if "threads" not in {f.name for f in dataclasses.fields(config)}]
    assert not missing


def test_interrupted_training_is_one_line_and_exit_status_130(monkeypatch, capsys):
    from priors3d.engine import Interrupted

    def stopped(group, command, args):
        raise Interrupted("stopped by SIGINT at step 3 of 10; checkpoint saved in runs/x (continue with --resume)")
    monkeypatch.setattr(cli, "run_command", stopped)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["field", "fit", "room"])
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step 3 of 10" in err and "--resume" in err


def test_a_locked_run_is_one_line_and_exit_status_2(monkeypatch, capsys, tmp_path):
    from priors3d.runs import RunDir

    def locked(group, command, args):
        RunDir(tmp_path).lock()
    holder = RunDir(tmp_path)
    holder.lock()
    monkeypatch.setattr(cli, "run_command", locked)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["field", "fit", "room"])
    holder.unlock()
    assert exit_info.value.code == 2
    assert "being written by pid" in capsys.readouterr().err


def test_sigint_during_a_real_fit_saves_and_prints_one_line(tmp_path):
    """``priors3d field fit`` in a subprocess, interrupted by a real SIGINT once training runs."""
    import json
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "fit"
    command = [sys.executable, "-m", "priors3d.cli", "field", "fit", "room", "--out", str(out), "--iterations",
               "100000", "--eval-every", "100000", "--picture-views", "0", "--threads", "1", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)  # the engine writes metrics.jsonl when its loop starts
    time.sleep(1.0)  # a few training steps
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert "stopped by SIGINT at step" in err and "--resume" in err
    step = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert step > 0 and json.loads((out / "config.json").read_text())["kind"] == "field fit"
