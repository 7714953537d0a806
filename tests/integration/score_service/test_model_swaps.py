"""ReloadModel: a hot swap loses no call, and a bad model is refused while the old one serves."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import grpc
import onnx
import pytest
from onnx import TensorProto, helper
from sesame.score.v1 import score_service_pb2 as pb

from services.common.grpc_errors import error_details
from services.score.domain.features import FEATURE_COUNT

from .conftest import CALL_TIMEOUT_S, SERVING_MODEL_VERSION, RunningLedger, ScoreServer
from .test_scores_through_grpc import get_score

CALLER_THREADS = 8
SWAPS = 10


def copy_serving_model(models_root: Path, version: str) -> Path:
    directory = models_root / version
    shutil.copytree(models_root / SERVING_MODEL_VERSION, directory)
    return directory


def reload(server: ScoreServer, version: str, request_id: str) -> pb.ReloadModelResponse:
    request = pb.ReloadModelRequest(request_id=request_id, model_version=version)
    return server.stub.ReloadModel(request, timeout=CALL_TIMEOUT_S)


def serving_version(server: ScoreServer) -> str:
    info = server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=CALL_TIMEOUT_S)
    return info.model_version


def test_a_hot_swap_under_load_loses_no_call(
    ledger: RunningLedger, score_server: ScoreServer, models_root: Path
) -> None:
    copy_serving_model(models_root, "1.0.1")
    # tw-2 and tw-3 are not in the sample: users who consented and are thin files.
    for user_id in ("tw-2", "tw-3"):
        ledger.grant_consent(user_id)
    errors: list[BaseException] = []
    versions_seen: set[str] = set()
    swapping = threading.Event()
    swapping.set()

    def call_until_swaps_end(user_id: str) -> None:
        while swapping.is_set():
            try:
                versions_seen.add(get_score(score_server, user_id).model_version)
            except BaseException as error:
                errors.append(error)

    callers = [
        threading.Thread(target=call_until_swaps_end, args=(f"tw-{1 + index % 4}",))
        for index in range(CALLER_THREADS)
    ]
    for caller in callers:
        caller.start()
    for swap in range(SWAPS):
        version = "1.0.1" if swap % 2 == 0 else SERVING_MODEL_VERSION
        assert reload(score_server, version, f"swap-{swap}").model_version == version
    swapping.clear()
    for caller in callers:
        caller.join()

    assert errors == []
    assert versions_seen == {SERVING_MODEL_VERSION, "1.0.1"}


def test_a_corrupt_model_is_refused_and_the_old_one_keeps_serving(
    score_server: ScoreServer, models_root: Path
) -> None:
    corrupt = copy_serving_model(models_root, "2.0.0")
    (corrupt / "model.onnx").write_bytes(b"this is not an onnx graph")

    with pytest.raises(grpc.RpcError) as raised:
        reload(score_server, "2.0.0", "corrupt-model")

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(raised.value).reason == "MODEL_REJECTED"
    assert serving_version(score_server) == SERVING_MODEL_VERSION
    assert get_score(score_server, "tw-1").model_version == SERVING_MODEL_VERSION


def test_a_model_with_the_wrong_inputs_is_refused(
    score_server: ScoreServer, models_root: Path
) -> None:
    wrong = copy_serving_model(models_root, "2.0.1")
    onnx.save(identity_graph_with_input_named("x"), str(wrong / "model.onnx"))

    with pytest.raises(grpc.RpcError) as raised:
        reload(score_server, "", "wrong-inputs")  # empty: the newest, which is 2.0.1

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(raised.value).reason == "MODEL_REJECTED"
    assert serving_version(score_server) == SERVING_MODEL_VERSION


def test_an_unknown_version_is_not_found(score_server: ScoreServer) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        reload(score_server, "9.9.9", "unknown-version")

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(raised.value).reason == "MODEL_VERSION_NOT_FOUND"
    assert serving_version(score_server) == SERVING_MODEL_VERSION


def test_a_reload_without_request_id_is_refused(score_server: ScoreServer) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        reload(score_server, SERVING_MODEL_VERSION, "")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value) == ("REQUEST_ID_REQUIRED", ("request_id",))


def test_a_reload_names_every_bad_field(score_server: ScoreServer) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        reload(score_server, "../1.0.0", "request id\n")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value) == ("ID_INVALID", ("request_id", "model_version"))
    assert serving_version(score_server) == SERVING_MODEL_VERSION


def identity_graph_with_input_named(input_name: str) -> onnx.ModelProto:
    """A valid graph that takes the right width of rows under the wrong input name."""
    shape = [None, FEATURE_COUNT]
    graph = helper.make_graph(
        [helper.make_node("Identity", [input_name], ["contributions"])],
        "wrong_inputs",
        [helper.make_tensor_value_info(input_name, TensorProto.DOUBLE, shape)],
        [helper.make_tensor_value_info("contributions", TensorProto.DOUBLE, shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
