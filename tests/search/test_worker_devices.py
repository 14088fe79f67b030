"""--workers on several GPUs: the device each worker is given (the count is passed in, so no GPU is needed)."""

from __future__ import annotations

from prunetuna.search import cuda_device_count, worker_device_env


def test_each_worker_gets_its_own_device_round_robin() -> None:
    assert [worker_device_env(i, 2, {}) for i in range(1, 4)] == [
        {"CUDA_VISIBLE_DEVICES": "1"},
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
    ]
    assert worker_device_env(0, 4, {}) == {"CUDA_VISIBLE_DEVICES": "0"}  # what worker 0's `devices: 1` takes anyway


def test_the_jobs_own_device_list_is_kept() -> None:
    environ = {"CUDA_VISIBLE_DEVICES": "2, 5,7"}
    assert [worker_device_env(i, 3, environ)["CUDA_VISIBLE_DEVICES"] for i in range(4)] == ["2", "5", "7", "2"]
    uuids = {"CUDA_VISIBLE_DEVICES": "GPU-aaaa,GPU-bbbb"}
    assert worker_device_env(1, 2, uuids) == {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}


def test_nothing_to_choose_with_one_device_or_none() -> None:
    assert worker_device_env(1, 0, {}) == {} and worker_device_env(1, 1, {}) == {}
    assert worker_device_env(1, 2, {"CUDA_VISIBLE_DEVICES": "3"}) == {}  # only one of them is visible
    assert cuda_device_count() >= 0
