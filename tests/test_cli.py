import pytest

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
