"""``edgesmith tune`` on the tiny cnn-digits: the contract, resume, the pruner, the space."""

from __future__ import annotations

import json

import pytest

from edgesmith.core.errors import ConfigError
from edgesmith.core.progress import ProgressEvent
from edgesmith.tune_space import SearchSpace, space_for
from edgesmith.tune_trial import AccuracyWatch, TrialStopped, best_within, pareto_front

# A space small enough for seconds per trial: one-epoch pruning, two targets.
SPACE = {
    "techniques": ["baseline", "prune"],
    "qat": [False],
    "prune": {"sparsity": [0.5, 0.7], "epochs": [1]},
    "targets": ["tflite:none", "tflite:int8"],
    "pruner": {"warmup_epochs": 1},
}


def _epoch(accuracy):
    return ProgressEvent("prune", "epoch", fields={"val_accuracy": accuracy})


def test_watch_stops_a_trial_below_the_floor_after_the_warmup():
    watch = AccuracyWatch(floor=0.9, warmup=2)
    watch(ProgressEvent("prune", "started"))
    watch(_epoch(0.5))  # first epoch: still warming up
    with pytest.raises(TrialStopped) as stopped:
        watch(_epoch(0.6))
    assert stopped.value.values == {0: 0.5, 1: 0.6}
    # A new training (the next step) warms up again; within the floor nothing stops.
    watch = AccuracyWatch(floor=0.9, warmup=1)
    watch(_epoch(0.95))
    watch(ProgressEvent("qat", "started"))
    watch(_epoch(0.95))
    assert watch.values == {0: 0.95, 1: 0.95}


def test_front_and_choice_follow_the_objective():
    rows = [
        {"accuracy": 0.90, "size_bytes": 100, "latency_ms": 2.0},
        {"accuracy": 0.91, "size_bytes": 300, "latency_ms": 1.0},
        {"accuracy": 0.89, "size_bytes": 400, "latency_ms": 3.0},  # beaten by both
    ]
    front = pareto_front(rows)
    assert rows[2] not in front and len(front) == 2
    assert best_within(front, "size")["size_bytes"] == 100
    assert best_within(front, "latency")["latency_ms"] == 1.0


def test_space_file_overrides_sections_and_names_bad_parameters(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE))
    space = space_for(path, "cnn")
    assert space.targets == ["tflite:none", "tflite:int8"] and space.warmup_epochs == 1
    assert space.steps["cluster"]["clusters"] == [8, 16, 32]  # a default section kept
    assert space.recipe({"technique": "prune", "prune.sparsity": 0.7, "prune.epochs": 1}) == (
        "prune:sparsity=0.7,epochs=1"
    )
    path.write_text(json.dumps({"prune": {"sparsty": [0.5]}}))
    with pytest.raises(ConfigError, match="no parameter 'sparsty'"):
        space_for(path, "cnn")
    path.write_text(json.dumps({"techniques": ["prune+qat"]}))
    with pytest.raises(ConfigError, match="technique 'prune\\+qat'"):
        space_for(path, "cnn")


def test_watch_judges_only_the_second_half_of_a_final_training():
    def epoch(done, accuracy):
        return ProgressEvent("t", "epoch", done=done, total=6, fields={"val_accuracy": accuracy})

    watch = AccuracyWatch(floor=0.9, warmup=1)
    watch(ProgressEvent("round 1/2", "started", fields={"interim": True}))
    for done in range(1, 7):  # an interim round far below the floor: never stopped
        watch(epoch(done, 0.2))
    watch(ProgressEvent("round 2/2", "started"))
    watch(epoch(1, 0.5))
    watch(epoch(2, 0.6))  # first half of the last round: recovering, not judged
    with pytest.raises(TrialStopped):
        watch(epoch(3, 0.7))


def test_default_space_has_the_structures_and_modes_the_steps_offer():
    from edgesmith.core.tables import FORMAT_QUANT
    from edgesmith.tune_space import supported_structures

    space = SearchSpace.default("cnn")
    # What changes the dense file: channels, not sparsity or clusters (same bytes, same speed).
    assert "channels" in supported_structures()
    assert space.steps["prune"]["structure"] == ["channels"]
    assert "cluster" not in space.techniques and "prune+cluster" not in space.techniques
    assert {"prune", "distill"} <= set(space.techniques)
    from edgesmith.plan import Target

    assert [str(Target.parse(t)) for t in space.targets] == space.targets  # all plan targets
    for fmt in FORMAT_QUANT:  # auto (mixed precision) is searched in every format
        assert f"{fmt}:auto" in space.targets


def test_qat_trials_convert_to_int8_and_the_pruner_leaves_slack(tmp_path):
    import optuna

    space = SearchSpace.default("cnn")
    assert space.slack_pt == 2.0 and space.to_dict()["pruner"]["slack_pt"] == 2.0
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    targets = {True: set(), False: set()}
    for _ in range(60):
        params = space.sample(study.ask())
        targets[params["qat"]].add(params["target"])
    assert targets[True] and all(t.endswith(":int8") for t in targets[True])
    assert any(not t.endswith(":int8") for t in targets[False])
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"pruner": {"warmup_epochs": 1, "slack_pt": -1}}))
    with pytest.raises(ConfigError, match="slack_pt"):
        space_for(path, "cnn")


def _config(out, space, **overrides):
    from edgesmith.tune import TuneConfig

    settings = {
        "model": "cnn-digits",
        "budget": 5.0,
        "out": out,
        "trials": 2,
        "space": space,
        "bench_runs": 3,
        "calibration_samples": 30,
        "parity_samples": 30,
    }
    return TuneConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def tuned(tiny_store, tmp_path_factory):
    from edgesmith.tune import run_tune

    out = tmp_path_factory.mktemp("tune")
    space = out / "space.json"
    space.write_text(json.dumps(SPACE))
    result = run_tune(_config(out, space, store=str(tiny_store)))
    return out, space, result


def test_tune_writes_the_contract(tuned):
    out, _, result = tuned
    written = json.loads((out / "tune.json").read_text())
    assert written["front"] and set(written["front"][0]) >= {
        "recipe",
        "target",
        "accuracy",
        "size_bytes",
        "latency_ms",
    }
    best = written["recommended"]
    assert set(best) >= {"recipe", "target", "file", "accuracy", "size_bytes", "latency_ms"}
    assert (best["recipe"], best["target"]) in {
        (r["recipe"], r["target"]) for r in written["front"]
    }
    with open(best["file"], "rb") as f:
        assert len(f.read()) == best["size_bytes"]
    assert 0 < best["accuracy"] <= 1
    # Within the budget on the validation split, where the search judged it.
    assert best["validation_accuracy"] >= written["reference_accuracy"]["validation"] - 0.05
    assert (out / "study.db").is_file() and (out / "report.md").is_file()
    assert sum(v for k, v in result["trials"].items() if k != "repeats") == 2
    # Quantized trials were timed beside the float32 file of their format.
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    quantized = [r for r in records if r["quant"] != "none" and r["error"] is None]
    assert quantized  # the seeded sampler picks an int8 target
    for record in quantized:
        assert record["paired"]["reference"].endswith("." + record["format"]), record["paired"]
        assert record["paired"]["speedup"] > 0


def test_more_trials_extend_the_same_study(tuned, tiny_store):
    import optuna

    from edgesmith.tune import STUDY_NAME, run_tune

    out, space, _ = tuned
    storage = f"sqlite:///{out / 'study.db'}"
    before = [t.params for t in optuna.load_study(study_name=STUDY_NAME, storage=storage).trials]
    run_tune(_config(out, space, trials=3, store=str(tiny_store)))
    after = optuna.load_study(study_name=STUDY_NAME, storage=storage).trials
    measured = [t for t in after if "repeat_of" not in t.user_attrs]
    assert len(measured) == 3 and [t.params for t in after[: len(before)]] == before


def test_a_point_measured_already_is_told_its_numbers_not_run_again(tiny_store, tmp_path):
    import optuna

    from edgesmith.tune import RESAMPLES, STUDY_NAME, run_tune

    space = tmp_path / "space.json"
    space.write_text(json.dumps({**SPACE, "techniques": ["baseline"], "targets": ["tflite:none"]}))
    result = run_tune(_config(tmp_path, space, trials=2, store=str(tiny_store)))
    # One point: measured once, asked again RESAMPLES - 1 times (told), then run (cached).
    assert result["trials"] == {"complete": 2, "repeats": RESAMPLES - 1}
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{tmp_path / 'study.db'}")
    first = study.trials[0]
    repeats = [t for t in study.trials if "repeat_of" in t.user_attrs]
    assert all(t.user_attrs["repeat_of"] == first.number for t in repeats)
    assert all(t.values == first.values and "record" not in t.user_attrs for t in repeats)
    assert len(result["front"]) == 1  # a repeat is not a variant of its own


def test_a_trial_out_of_the_budget_is_pruned(tiny_store, tmp_path):
    import optuna

    from edgesmith.tune import STUDY_NAME, run_tune

    space = tmp_path / "space.json"
    harsh = {**SPACE, "techniques": ["prune"], "prune": {"sparsity": [0.97], "epochs": [2]}}
    space.write_text(json.dumps(harsh))
    result = run_tune(_config(tmp_path, space, budget=0.0, trials=1, store=str(tiny_store)))
    assert result["trials"] == {"pruned": 1}
    trial = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{tmp_path / 'study.db'}")
    stopped = trial.trials[0]
    # Stopped after the first epoch (warmup 1) of two, below the float model's accuracy.
    assert len(stopped.user_attrs["val_accuracy_epochs"]) == 1
    assert result["recommended"] is None


def test_cli_tune_in_parallel(tiny_store, tmp_path):
    from edgesmith.cli import main

    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    args = ["tune", "cnn-digits", "--budget", "5", "--trials", "2", "--space", str(space)]
    args += ["--runs", "3", "--out", str(tmp_path / "t"), "--store", str(tiny_store)]
    assert main([*args, "--workers", "2"]) == 0
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["recommended"]
