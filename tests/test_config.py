"""Options, declared once: validated in one place, from the command line, a file or Python."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import MODELS, assert_clean_error, cli_args, read_report_json, run

from reportgen import build_report
from reportgen.commands.cli import build, main
from reportgen.config import BuildConfig, all_options
from reportgen.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_every_declared_option_is_on_the_command_line_once() -> None:
    declared = sorted(o.flag for _, o, _ in all_options())
    command = sorted(o for p in build.params for o in p.opts if o.startswith("--"))
    assert sorted({*declared, "--config"}) == command
    assert len(declared) == len(set(declared))


def test_values_are_checked_in_one_place_whatever_their_source() -> None:
    base = {"model": "resnet18", "images": Path("x")}
    with pytest.raises(ConfigError, match=r"--examples: -1 is not in the range x>=0"):
        BuildConfig.from_options({**base, "examples": -1})
    with pytest.raises(ConfigError, match="unknown option 'batchsize'; did you mean batch-size"):
        BuildConfig.from_options({**base, "batchsize": 4})
    with pytest.raises(ConfigError, match="--std values must be positive"):
        BuildConfig.from_options({**base, "std": "0.5,0,0.5"})
    with pytest.raises(ConfigError, match="--single-file: 'yes' is not true or false"):
        BuildConfig.from_options({**base, "single_file": "yes"})
    with pytest.raises(ConfigError, match="--images is required"):
        BuildConfig.from_options({"model": "resnet18"})
    config = BuildConfig.from_options({**base, "mean": [0.5, 0.5, 0.5], "layers": "a.*, b"})
    assert config.model.mean == (0.5, 0.5, 0.5) and config.run.layers == ("a.*", "b")
    assert config.replace(batch_size=3).run.batch_size == 3
    assert config.replace(batch_size=3).options() == {**config.options(), "batch_size": 3}


def test_the_python_api_refuses_an_unknown_option(images: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="build_report: unknown option 'batch'"):
        build_report(f"{MODELS}:TinyNet", images, tmp_path / "s", weights="none", batch=4)
    assert not (tmp_path / "s").exists()


def test_h_is_help_for_the_group_and_the_command() -> None:
    for args in (["-h"], ["build", "-h"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and "Usage:" in result.output
        assert result.output == CliRunner().invoke(main, [*args[:-1], "--help"]).output


def test_a_config_file_sets_options_relative_to_itself_and_the_command_line_wins(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    write(project / "names" / "fruit.txt", "apple\nbanana\ncherry\n")
    write(
        project / "featreport.toml",
        f'model = "{MODELS}:TinyNet"\nweights = "none"\nclasses = "names/fruit.txt"\n'
        "input-size = 32\nexamples = 1\nbatch_size = 5\n",
    )
    monkeypatch.chdir(tmp_path)  # not the project: --config names it
    config_file = project / "featreport.toml"
    code, _, err = run(
        "--config", str(config_file), "--images", str(images), "--out", "site", "--examples", "2"
    )
    assert code == 0, err
    assert f"Options from {config_file}" in err
    data = read_report_json(tmp_path / "site")
    assert data["classes"] == ["apple", "banana", "cherry"]
    assert len(list((tmp_path / "site" / "images").glob("*.html"))) == 2  # the command line won

    monkeypatch.chdir(project)  # found without --config, in the working folder
    code, _, err = run("--images", str(images), "--out", str(tmp_path / "found"), "-q")
    assert code == 0, err
    assert err == ""
    assert len(list((tmp_path / "found" / "images").glob("*.html"))) == 1


def test_pyproject_table_is_read_and_other_pyprojects_are_ignored(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    code, _, err = run(*cli_args(images, tmp_path / "a", "--input-size", "32", "-q"))
    assert code == 0, err
    write(
        tmp_path / "pyproject.toml",
        f'[project]\nname = "x"\n\n[tool.featreport]\nmodel = "{MODELS}:TinyNet"\n'
        'weights = "none"\ninput-size = 32\nexamples = 0\n',
    )
    code, _, err = run("--images", str(images), "--out", str(tmp_path / "b"), "-q")
    assert code == 0, err
    assert not (tmp_path / "b" / "images").exists()


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("batch-sise = 4\n", ["featreport.toml: unknown option 'batch-sise'", "batch-size"]),
        ("examples = 'many'\n", ["featreport.toml: --examples: 'many' is not a valid integer"]),
        ("examples = [\n", ["featreport.toml is not valid TOML"]),
        ("[run]\nbatch-size = 2\n", ["'run' is a table", "plain keys"]),
    ],
)
def test_a_bad_config_file_is_one_clear_error(
    text: str, needles: list[str], images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "featreport.toml", text)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(*cli_args(images, tmp_path / "site"))
    assert_clean_error(code, out, err, *needles)
    assert code == 2 and not (tmp_path / "site").exists()


def test_a_missing_config_file_and_a_missing_model_are_clear_errors(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run("--config", str(tmp_path / "nope.toml"), *cli_args(images, None))
    assert_clean_error(code, out, err, "nope.toml: no such file")
    code, out, err = run("--images", str(images))
    assert_clean_error(code, out, err, "--model is required")
