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
