"""The CLI contract: command names, JSON keys, exit codes and error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgesmith.cli import build_parser, main
from tests.conftest import FAMILY_MODELS


def _subcommands(parser, prefix=()):
    """Every (sub)command path of the CLI, for --help checks."""
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                yield (*prefix, name)
                yield from _subcommands(sub, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_subcommands(build_parser())], ids=" ".join)
def test_every_command_has_help_with_an_example(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: edgesmith" in text
    assert "example" in text


def test_help_and_zoo_list_do_not_import_tensorflow(tmp_path):
    code = (
        "import sys, edgesmith.cli as c; c.main(['zoo', 'list', '--json']);"
        "assert 'tensorflow' not in sys.modules, 'TF imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert {e["family"] for e in entries} == {"cnn", "lstm", "transformer"}


def test_zoo_list_json_contract(tiny_store, capsys):
    assert main(["zoo", "list", "--json", "--store", str(tiny_store)]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    expected = {
        "cnn-mnist", "dscnn-kws", "lstm-kws", "transformer-kws", "transformer-sms",
        "cnn-digits", "lstm-digits", "transformer-digits",
    }  # fmt: skip
    assert set(entries) == expected
    for entry in entries.values():
        assert {"name", "family", "task", "dataset", "trained"} <= set(entry)
    assert entries["cnn-digits"]["trained"] is True
    assert entries["cnn-mnist"]["trained"] is False


@pytest.mark.parametrize("family", FAMILY_MODELS)
def test_zoo_eval_json_matches_the_card(family, tiny_store, tmp_path, capsys):
    name = FAMILY_MODELS[family]
    out = tmp_path / "eval.json"
    assert main(["zoo", "eval", name, "--store", str(tiny_store), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["name"] == name and result["samples"] == 270
    card = json.loads((tiny_store / name / "card.json").read_text())
    assert result["accuracy"] == pytest.approx(card["accuracy"])
    assert json.loads(capsys.readouterr().out) == result


@pytest.mark.parametrize("family", FAMILY_MODELS)
def test_export_eval_writes_what_the_model_consumes(family, tiny_store, tmp_path):
    from edgesmith.zoo.store import ModelStore

    name = FAMILY_MODELS[family]
    out = tmp_path / f"{name}.npz"
    args = ["zoo", "export-eval", name, "--store", str(tiny_store), "--split", "all"]
    assert main([*args, "--out", str(out)]) == 0
    with np.load(out) as npz:
        x, y = npz["x"], npz["y"]
    assert len(x) == len(y) == 1797
    model = ModelStore(tiny_store).load(name).model
    assert x.shape[1:] == tuple(model.input_shape[1:])
    accuracy = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))
    card = ModelStore(tiny_store).card(name)
    assert abs(accuracy - card.accuracy) < 0.1  # same preprocessing as at training time


@pytest.mark.slow
def test_train_prints_a_table_and_writes_a_report(tmp_path, capsys):
    report = tmp_path / "zoo.md"
    args = ["zoo", "train", "cnn-digits", "--epochs", "1", "--out", str(tmp_path / "s")]
    assert main([*args, "--report", str(report)]) == 0
    assert "cnn-digits" in capsys.readouterr().out
    assert "| cnn-digits | cnn | digits |" in report.read_text()
    assert (tmp_path / "s" / "cnn-digits" / "card.json").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["zoo", "train", "cnn-mnst"], "did you mean 'cnn-mnist'"),
        (["zoo", "eval", "nope"], "unknown model 'nope'"),
        (["zoo", "eval", "lstm-kws"], "no trained copy of 'lstm-kws'"),
        (["zoo", "export-eval", "cnn-digits", "--out", "x.csv"], "ending in .npz"),
        (["zoo", "train", "cnn-mnist", "--data-dir", "/does/not/exist"], "/does/not/exist"),
    ],
)
def test_user_errors_exit_2_with_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_installed_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "edgesmith", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("edgesmith ")


def _error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_wrapped_library_error_keeps_its_cause_for_edgesmith_debug(tmp_path, monkeypatch, capsys):
    # A broken JSON recipe fails before TensorFlow loads; json's own error is the cause.
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"steps": [\n  {"step": "prune",, }\n]}\n')
    argv = ["compress", "cnn-digits", "--recipe", str(recipe), "--out", str(tmp_path / "out")]
    monkeypatch.delenv("EDGESMITH_DEBUG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == _error_lines(err)
    assert len(_error_lines(err)) == 1
    assert "cannot be parsed (Expecting property name" in err
    assert "Traceback" not in err

    monkeypatch.setenv("EDGESMITH_DEBUG", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "json.decoder.JSONDecodeError: Expecting property name" in err
    assert "The above exception was the direct cause of the following exception" in err
    assert "edgesmith.core.errors.DataError" in err
    assert len(_error_lines(err)) == 1


def test_unexpected_exception_exits_1_with_one_line(tmp_path, monkeypatch, capsys):
    import edgesmith.commands.run as run_command

    def broken(_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(run_command, "_run", broken)
    monkeypatch.delenv("EDGESMITH_DEBUG", raising=False)
    assert main(["run", "--models", "cnn-digits", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == _error_lines(err)
    assert len(_error_lines(err)) == 1
    assert "internal error (RuntimeError: boom)" in err
    assert "EDGESMITH_DEBUG=1" in err
    assert "Traceback" not in err

    monkeypatch.setenv("EDGESMITH_DEBUG", "1")
    assert main(["run", "--models", "cnn-digits", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "RuntimeError: boom" in err


def test_error_message_is_printed_verbatim_not_as_markup(tmp_path, monkeypatch, capsys):
    import edgesmith.commands.run as run_command
    from edgesmith.core.errors import ConfigError

    def refuse(_args):
        raise ConfigError("exclude='^[ab]' [/x] [bold]")

    monkeypatch.setattr(run_command, "_run", refuse)
    monkeypatch.delenv("EDGESMITH_DEBUG", raising=False)
    assert main(["run", "--models", "cnn-digits", "--out", str(tmp_path)]) == 2
    assert _error_lines(capsys.readouterr().err) == ["error: exclude='^[ab]' [/x] [bold]"]
