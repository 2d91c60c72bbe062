"""`facekp tune`: real Optuna studies over real tiny training runs, tracked in a real MLflow server."""

from __future__ import annotations

import pytest
from mlflow_probe import metric_steps, mlflow_runs
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode
from facekp_cli.search_space import build_space, parse_param_flag
from facekp_cli.settings import load_settings

runner = CliRunner()
PARAMS = ["--param", "train.lr=0.001..0.01:log", "--param", "model.head=regression,integral"]


def tune_args(tiny_dataset, tmp_path, uri, *extra):
    sets = {
        "model.input_size": 32,
        "model.width": 8,
        "data.num_workers": 0,
        "train.batch_size": 8,
        "train.out_dir": tmp_path / "runs",
        "tracking.uri": uri,
    }
    flags = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    return [*flags, "tune", "--data", str(tiny_dataset), "--epochs", "2", *PARAMS, *extra]


def test_two_trials_are_child_runs_and_the_best_becomes_a_config_fragment(
    tiny_dataset, tmp_path, monkeypatch, mlflow_server
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "best.toml"
    result = runner.invoke(
        app, tune_args(tiny_dataset, tmp_path, mlflow_server, "--n-trials", "2", "--out", str(out))
    )
    assert result.exit_code == 0, result.output
    assert "2 trial(s) run now, 2 in all" in result.output and f"written to {out}" in result.output

    runs = {r.info.run_name: r for r in mlflow_runs(mlflow_server)}
    parent = runs["tune-facekp"]
    children = [r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["facekp.tune.trial"] for r in children) == ["0", "1"]
    assert all(r.info.status == "FINISHED" and "val_nme" in r.data.metrics for r in children)
    # A trial's value is its best epoch's validation NME.
    best_nme = {
        r.info.run_id: min(v for _, v in metric_steps(mlflow_server, r.info.run_id, "val_nme"))
        for r in children
    }
    best_child = min(children, key=lambda r: best_nme[r.info.run_id])
    assert parent.data.metrics["best_val_nme"] == pytest.approx(best_nme[best_child.info.run_id], rel=1e-6)
    # Each child logged the settings it trained with: the sampled ones.
    head = best_child.data.params["model.head"]
    assert head in ("regression", "integral")

    # The fragment is a valid conf.toml that reproduces the best trial's choices.
    settings = load_settings(out, environ={})
    assert settings.model.head == head
    assert settings.train.lr == pytest.approx(float(best_child.data.params["train.lr"]))
    assert settings.sources["train.lr"] == f"file:{out}"

    # Resumed: the same study continues (3 trials), under the same parent run.
    again = runner.invoke(app, tune_args(tiny_dataset, tmp_path, mlflow_server, "--n-trials", "1"))
    assert again.exit_code == 0, again.output
    assert "1 trial(s) run now, 3 in all" in again.output
    parents = [r for r in mlflow_runs(mlflow_server) if r.info.run_name == "tune-facekp"]
    assert len(parents) == 1
    kids = [
        r for r in mlflow_runs(mlflow_server) if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    assert len(kids) == 3


def test_a_trial_worse_than_the_median_is_pruned_through_the_lightning_callback(
    tiny_dataset, tmp_path, monkeypatch
):
    """Two finished trials that were near perfect at every epoch: a new one is pruned after epoch 2."""
    import optuna

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="p", storage=storage, direction="minimize")
    dims = build_space(None, [PARAMS[1], PARAMS[3]])
    distributions = {
        d.key: optuna.distributions.FloatDistribution(d.low, d.high, log=d.log)
        if not d.choices
        else optuna.distributions.CategoricalDistribution(list(d.choices))
        for d in dims
        if d.key in ("train.lr", "model.head")
    }
    for lr in (0.002, 0.004):
        study.add_trial(
            optuna.trial.create_trial(
                params={"train.lr": lr, "model.head": "regression"},
                distributions=distributions,
                value=0.01,
                intermediate_values={0: 0.01, 1: 0.01, 2: 0.01},
            )
        )
    args = tune_args(tiny_dataset, tmp_path, uri, "--n-trials", "1", "--study", "p", "--storage", storage)
    args[args.index("--epochs") + 1] = "3"
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="p", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert sorted(trials[2].intermediate_values) == [0, 1]  # stopped after its second epoch
    (child,) = [r for r in mlflow_runs(uri) if r.data.tags.get("facekp.tune.trial") == "2"]
    assert child.info.status == "KILLED" and child.data.tags["facekp.tune.pruned"] == "true"


def test_search_space_errors_name_the_key():
    with pytest.raises(Exception, match=r"unknown setting 'train\.lrr'.*did you mean 'train\.lr'"):
        build_space(None, ["train.lrr=0.1..0.2"])
    with pytest.raises(Exception, match="low < high"):
        build_space(None, ["train.lr=0.2..0.1"])
    assert parse_param_flag("train.batch_size=16..64") == (
        "train.batch_size",
        {"low": 16, "high": 64, "log": False},
    )
    assert parse_param_flag("model.flip_test=true,false") == ("model.flip_test", {"choices": [True, False]})


def test_space_file_errors_are_usage_errors(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.toml"
    space.write_text("[train.lr]\nlow = 0.1\nhigh = 0.01\n")
    result = runner.invoke(app, ["tune", "--data", str(tiny_dataset), "--space", str(space), "--no-tracking"])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert str(space) in result.output and "low < high" in result.output


def test_a_resumed_study_samples_new_points_refuses_other_fixed_settings_and_the_fragment_is_complete(
    tiny_dataset, tmp_path, monkeypatch
):
    import optuna

    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    out = tmp_path / "best.toml"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = tune_args(tiny_dataset, tmp_path, uri, "--n-trials", "1", "--study", "s", "--storage", storage)
    args += ["--no-tracking", "--out", str(out)]
    for _ in range(2):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    first, second = optuna.load_study(study_name="s", storage=storage).trials
    # Re-seeding the sampler with the same seed replayed trial 0's parameters.
    assert first.params != second.params

    other = list(args)
    other[other.index("--epochs") + 1] = "3"
    refused = runner.invoke(app, other)
    assert refused.exit_code == ExitCode.USAGE, refused.output
    assert "study 's' ran its trials with train.epochs=2 (now 3)" in refused.output
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 2
    other_space = list(args)
    other_space[args.index(PARAMS[1])] = "train.lr=0.002..0.02:log"  # another range for train.lr
    refused = runner.invoke(app, other_space)
    assert refused.exit_code == ExitCode.USAGE and "searched another space" in refused.output

    # The fragment carries the fixed settings too: it trains the same model on its own.
    settings = load_settings(out, environ={})
    assert (settings.model.input_size, settings.model.width, settings.train.epochs) == (32, 8, 2)
    assert settings.train.batch_size in (32, 64)  # searched (the default space): the best trial's value
    assert settings.data.root == tiny_dataset.resolve()
    assert settings.sources["model.input_size"] == f"file:{out}"
    assert "out_dir" not in out.read_text()  # where runs go is not part of the model
