

def test_a_candidate_whose_training_step_fails_fails_its_trial(tmp_path: Path) -> None:
    config = _config("cand-fails", "FailsWhenPruned", model={"prune": "net"}, metric={"name": "val/f1"})
    result, path = _search(tmp_path, config)
    assert result.exit_code != 2, result.output  # the dense model trained: not bad input
    study = optuna.load_study(study_name="cand-fails", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    pruned = [t for t in study.trials if any(v > 0 for v in t.params.values())]
    assert pruned and all(t.state.name == "FAIL" for t in pruned)
    assert all("ValueError: this module expects 6 channels" in t.user_attrs["fail_reason"] for t in pruned)
