"""The agent on loopback: measurements, token, bind refused beyond loopback, upload limit, operator domains."""

from __future__ import annotations

import http.client
import json

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from prunetuna.device import DeviceClient, DeviceRefused, MeasureRequest
from prunetuna.objectives import export_onnx
from prunetuna.workload import TinyResNet

from .conftest import TOKEN, launch

SHAPE = [1, 1, 28, 28]


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return export_onnx(TinyResNet(width=4), torch.randn(*SHAPE))


def _custom_op_model(domain: str) -> bytes:
    node = helper.make_node("FastRelu", ["input"], ["output"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, SHAPE)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
    return model.SerializeToString()


def test_measures_and_describes_the_device(start_agent, model_bytes: bytes) -> None:
    agent = start_agent()
    client = DeviceClient(agent.url, token=TOKEN)
    info = client.info()
    assert {"cpu", "cores", "onnxruntime", "providers"} <= set(info["device"]) and "CPUExecutionProvider" in info[
        "providers"
    ]
    reply = client.measure(model_bytes, MeasureRequest(SHAPE, warmup=2, repeats=10, max_ci=10.0))
    assert reply.median_ms > 0 and reply.spread >= 0 and reply.ci >= 0 and reply.attempts == 1
    assert reply.device["provider"] == "CPUExecutionProvider" and reply.device["cores"] >= 1
    assert client.info()["measurements"] == 1


def test_wrong_or_missing_token_is_401_and_the_agent_keeps_serving(start_agent, model_bytes: bytes) -> None:
    agent = start_agent()
    for token in ("wrong-token", ""):
        with pytest.raises(DeviceRefused, match="answered 401: missing or wrong token") as caught:
            DeviceClient(agent.url, token=token).measure(model_bytes, MeasureRequest(SHAPE, repeats=5))
        assert caught.value.status == 401
    with pytest.raises(DeviceRefused, match="401"):
        DeviceClient(agent.url, token="wrong-token").info()
    assert DeviceClient(agent.url, token=TOKEN).info()["measurements"] == 0


@pytest.mark.parametrize("token", [None, "short"])
def test_bind_beyond_loopback_without_a_token_is_refused(tmp_path, token: str | None) -> None:
    process = launch(tmp_path / "agent.log", "--host", "0.0.0.0", "--port", "0", token=token)
    assert process.wait(timeout=60) == 2
    lines = (tmp_path / "agent.log").read_text().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prunetuna: error: ") and "PRUNETUNA_DEVICE_TOKEN" in lines[0]


def test_oversize_upload_is_413_and_the_agent_keeps_serving(start_agent, model_bytes: bytes) -> None:
    agent = start_agent("--max-upload-mb", "0.01")
    assert len(model_bytes) > 0.01 * 1024 * 1024
    with pytest.raises(DeviceRefused, match="answered 413: upload of .* over this agent's limit") as caught:
        DeviceClient(agent.url, token=TOKEN).measure(model_bytes, MeasureRequest(SHAPE, repeats=5))
    assert caught.value.status == 413
    client = DeviceClient(agent.url, token=TOKEN)
    with pytest.raises(
        DeviceRefused, match="over the limit of the device agent"
    ) as caught:  # known after info: not even sent
        client.info()
        client.measure(model_bytes, MeasureRequest(SHAPE, repeats=5))
    assert client.info()["measurements"] == 0


@pytest.mark.parametrize("domain", ["com.example.fastops", "com.microsoft"])
def test_custom_operator_domain_is_refused(start_agent, domain: str) -> None:
    agent = start_agent()
    client = DeviceClient(agent.url, token=TOKEN)
    with pytest.raises(DeviceRefused, match=f"domain '{domain}' refused: only the standard ONNX domains") as caught:
        client.measure(_custom_op_model(domain), MeasureRequest(SHAPE, repeats=5))
    assert caught.value.status == 400
    assert client.info()["measurements"] == 0


def test_malformed_requests_are_400(start_agent, model_bytes: bytes) -> None:
    agent = start_agent()
    client = DeviceClient(agent.url, token=TOKEN)
    with pytest.raises(DeviceRefused, match="400: the upload is not an ONNX model"):
        client.measure(b"\x00not onnx at all", MeasureRequest(SHAPE, repeats=5))
    with pytest.raises(DeviceRefused, match="400: the model does not run on input shape"):
        client.measure(model_bytes, MeasureRequest([1, 3, 28, 28], repeats=5))
    with pytest.raises(DeviceRefused, match="400: execution provider 'TensorrtExecutionProvider' is not"):
        client.measure(model_bytes, MeasureRequest(SHAPE, repeats=5, provider="TensorrtExecutionProvider"))
    connection = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    connection.request(
        "POST",
        "/v1/measure",
        body=model_bytes,
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "X-Prunetuna-Request": json.dumps({"input_shape": SHAPE, "repeats": -1}),
        },
    )
    answer = connection.getresponse()
    assert answer.status == 400 and "repeats must be an integer" in json.loads(answer.read())["error"]
    assert onnx.load_model_from_string(model_bytes).graph.node  # the good model still measures after all that
    assert client.measure(model_bytes, MeasureRequest(SHAPE, warmup=1, repeats=5, max_ci=10.0)).median_ms > 0
