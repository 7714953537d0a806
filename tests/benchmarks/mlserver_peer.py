"""MLServer serving the score model's trees, the general-purpose peer `bench_score` measures.

MLServer (with its LightGBM runtime) is what a user would pick instead of the score service to
serve the same model in Python. It pins protobuf below 7, so it runs from a virtual environment
of its own, `var/bench/mlserver-venv`, created on first use with the versions pinned in
`MLSERVER_REQUIREMENTS` and reused while they stay installed.

The same trees: mlserver-lightgbm loads a LightGBM booster text file, and the repository keeps
only the ONNX export of its model, so the booster is trained again with the training code's own
functions (`train_final` with the configuration and number of rounds the model card records;
training is deterministic) and cached in `var/bench/mlserver-model/<onnx sha256>/model.bst`.
Before anything is measured, the benchmark shows with `booster_parity` that the booster's
probability of default equals the committed ONNX model's within `PARITY_TOLERANCE` on the rows
it sends, and with `served_parity` that MLServer's answers over gRPC do too on a few of them.

The client side runs in the benchmark's own environment (protobuf 7) without MLServer's proto:
the V2 messages are built at run time from the file descriptor MLServer's package carries
(`v2_messages`), and the load generator sends pre-serialised ModelInfer requests through a
generic unary call (`model_infer`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from numpy.typing import NDArray

from services.score.domain import model_contract
from services.score.domain.features import FEATURE_COUNT
from services.suite.launch import stop_all
from tests.benchmarks.loadgen import Operation, OperationContext

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
BENCH_ROOT = REPOSITORY_ROOT / "var" / "bench"
VENV_DIRECTORY = BENCH_ROOT / "mlserver-venv"
MODEL_CACHE = BENCH_ROOT / "mlserver-model"
# What the MLServer environment gets; lightgbm as in constraints.txt, so the trees are read
# by the same library that trained them.
MLSERVER_REQUIREMENTS = (
    "mlserver==1.7.1",
    "mlserver-lightgbm==1.7.1",
    "lightgbm==4.7.0",
    # uvloop 0.22 and later raise in asyncio.get_event_loop() without a running loop, which
    # MLServer 1.7.1's inference worker processes call as they start.
    "uvloop==0.21.0",
)
MODEL_NAME = "score"
BOOSTER_FILE_NAME = "model.bst"
PARITY_TOLERANCE = 1e-5
SERVED_PARITY_ROWS = 16
MODEL_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
MODEL_READY_METHOD = "/inference.GRPCInferenceService/ModelReady"
STARTUP_TIMEOUT_S = 120.0


# ----------------------------------------------------------------------------------------------
# The environment


def ensure_environment() -> Path:
    """The MLServer environment's python, creating or completing the environment when needed."""
    python = VENV_DIRECTORY / "bin" / "python"
    if python.exists() and _has_requirements(python):
        return python
    if not python.exists():
        print(f"creating {VENV_DIRECTORY.relative_to(REPOSITORY_ROOT)}", flush=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base_python, "-m", "venv", str(VENV_DIRECTORY)], check=True)
    print(f"installing {' '.join(MLSERVER_REQUIREMENTS)}", flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *MLSERVER_REQUIREMENTS], check=True
    )
    if not _has_requirements(python):
        raise RuntimeError(f"{VENV_DIRECTORY} does not have {MLSERVER_REQUIREMENTS} after pip")
    return python


def _has_requirements(python: Path) -> bool:
    pinned = {
        name: version for name, _, version in (r.partition("==") for r in MLSERVER_REQUIREMENTS)
    }
    script = (
        "import json, sys; from importlib import metadata\n"
        "versions = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: versions[name] = metadata.version(name)\n"
        "    except metadata.PackageNotFoundError: versions[name] = None\n"
        "print(json.dumps(versions))"
    )
    completed = subprocess.run(
        [str(python), "-c", script, *pinned], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        return False
    return bool(json.loads(completed.stdout) == pinned)


# ----------------------------------------------------------------------------------------------
# The model


def booster_file(onnx_path: Path) -> Path:
    """The LightGBM booster of the committed ONNX model, trained again on first use and cached."""
    onnx_sha256 = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    path = MODEL_CACHE / onnx_sha256 / BOOSTER_FILE_NAME
    if not path.exists():
        print("training the booster again for MLServer (deterministic, about a minute)", flush=True)
        text = _train_booster_text(onnx_path.parent / model_contract.MODEL_CARD_FILE_NAME)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".partial")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    return path


def _train_booster_text(model_card_path: Path) -> str:
    """The final booster, trained exactly as `services.score.training.train` trains it."""
    from services.score.training import dataset, train
    from services.score.training.dataset import TRAINING_DATA

    card = json.loads(model_card_path.read_text(encoding="utf-8"))
    config = train.TrainingConfig(**card["training"]["config"])
    if config.sha256() != card["training"]["config_sha256"]:
        raise RuntimeError("the model card's training configuration does not hash as recorded")
    data = dataset.load_labelled_features(TRAINING_DATA)
    withheld = train.withheld_rows(len(data.labels), config)
    booster = train.train_final(
        train.training_features(data, withheld),
        data.labels,
        config,
        card["training"]["boosting_rounds"],
    )
    text: str = booster.model_to_string()
    return text


@dataclass(frozen=True)
class Parity:
    """How far one model's probabilities of default are from the ONNX model's, on which rows."""

    rows: int
    max_abs_probability_error: float

    def check(self, what: str) -> None:
        """Raises AssertionError past PARITY_TOLERANCE: `what` would not be the same model."""
        if not self.max_abs_probability_error <= PARITY_TOLERANCE:
            raise AssertionError(f"{what} differs from the ONNX model: {self}")


def training_rows(count: int) -> NDArray[np.float64]:
    """The features of the first `count` training rows, through the training code's path."""
    from services.datasets import taiwan
    from services.score.domain.features import compute_features
    from services.score.training import dataset
    from services.score.training.dataset import TRAINING_DATA

    rows = itertools.islice(taiwan.read_rows(TRAINING_DATA), count)
    features = [compute_features(dataset.history_for_row(row)) for row in rows]
    return np.array(features, dtype=np.float64).reshape(len(features), FEATURE_COUNT)


def onnx_probability_of_default(onnx_path: Path, rows: NDArray[np.float64]) -> NDArray[np.float64]:
    from services.score.adapters.model_files import onnx_session, run_model

    return run_model(onnx_session(onnx_path), rows).probability_of_default


def booster_parity(
    booster_path: Path, rows: NDArray[np.float64], expected: NDArray[np.float64]
) -> Parity:
    """The booster file's probability of default against `expected` (the ONNX model's)."""
    import lightgbm

    predicted = np.asarray(lightgbm.Booster(model_file=str(booster_path)).predict(rows))
    return Parity(len(rows), float(np.max(np.abs(predicted - expected))))


# ----------------------------------------------------------------------------------------------
# The V2 messages, built at run time from MLServer's own file descriptor


def v2_file_descriptor(python: Path) -> bytes:
    """The serialized FileDescriptorProto of MLServer's dataplane.proto (package inference)."""
    script = (
        "import sys\n"
        "from mlserver.grpc import dataplane_pb2\n"
        "sys.stdout.buffer.write(dataplane_pb2.DESCRIPTOR.serialized_pb)\n"
    )
    completed = subprocess.run([str(python), "-c", script], capture_output=True, check=True)
    return completed.stdout


@dataclass(frozen=True)
class V2Messages:
    """The message classes of the V2 inference protocol that the benchmark uses."""

    model_infer_request: Any
    model_infer_response: Any
    model_ready_request: Any
    model_ready_response: Any


def v2_messages(file_descriptor: bytes) -> V2Messages:
    """Message classes from a dataplane.proto descriptor, in a pool of their own."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(file_descriptor))

    def message_class(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}"))

    return V2Messages(
        model_infer_request=message_class("ModelInferRequest"),
        model_infer_response=message_class("ModelInferResponse"),
        model_ready_request=message_class("ModelReadyRequest"),
        model_ready_response=message_class("ModelReadyResponse"),
    )


def model_infer_request(messages: V2Messages, row: NDArray[np.float64]) -> bytes:
    """A serialized ModelInfer request of one row of features, FP64 [1, FEATURE_COUNT]."""
    request = messages.model_infer_request(model_name=MODEL_NAME)
    tensor = request.inputs.add(name="features", datatype="FP64", shape=[1, FEATURE_COUNT])
    tensor.contents.fp64_contents.extend(row.tolist())
    serialized: bytes = request.SerializeToString()
    return serialized


def probabilities_in(messages: V2Messages, response_bytes: bytes) -> NDArray[np.float64]:
    """The "predict" output of a ModelInfer response: LightGBM's probability of default."""
    response = messages.model_infer_response.FromString(response_bytes)
    if response.raw_output_contents:
        return np.frombuffer(response.raw_output_contents[0], dtype=np.float64)
    return np.array(response.outputs[0].contents.fp64_contents, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# The server


def _raw_bytes(value: bytes) -> bytes:
    return value


def _unary_call(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(
        method, request_serializer=_raw_bytes, response_deserializer=_raw_bytes
    )


@contextmanager
def running_mlserver(
    python: Path,
    booster_path: Path,
    directory: Path,
    *,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    parallel_workers: int,
    messages: V2Messages,
) -> Iterator[str]:
    """Runs `mlserver start` on the booster until the context ends; yields its gRPC address.

    MLServer's defaults, except: no debug access log (the score server logs at WARNING in the
    benchmark), its ports, and `parallel_workers` inference processes. Its output goes to
    `directory/mlserver.log`, and the end of it into the error when it fails to start.
    """
    _write_settings(
        directory,
        booster_path,
        {
            "grpc_port": grpc_port,
            "http_port": http_port,
            "metrics_port": metrics_port,
            "parallel_workers": parallel_workers,
        },
    )
    command = [str(python.parent / "mlserver"), "start", str(directory)]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    log_path = directory / "mlserver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=directory, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    address = f"127.0.0.1:{grpc_port}"
    try:
        _wait_until_model_ready(address, process, messages, log_path)
        yield address
    finally:
        stop_all([process])


def _write_settings(directory: Path, booster_path: Path, server_settings: dict[str, int]) -> None:
    model_directory = directory / MODEL_NAME
    model_directory.mkdir(parents=True)
    (model_directory / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL_NAME,
                "implementation": "mlserver_lightgbm.LightGBMModel",
                "parameters": {"uri": str(booster_path)},
            }
        )
    )
    (directory / "settings.json").write_text(
        json.dumps(
            {
                "debug": False,
                "host": "127.0.0.1",
                "metrics_dir": str(directory / "metrics"),
                **server_settings,
            }
        )
    )


def _wait_until_model_ready(
    address: str, process: subprocess.Popen[bytes], messages: V2Messages, log_path: Path
) -> None:
    request = messages.model_ready_request(name=MODEL_NAME).SerializeToString()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        model_ready = _unary_call(channel, MODEL_READY_METHOD)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"mlserver exited with {process.returncode}:\n{output}")
            try:
                answer = messages.model_ready_response.FromString(model_ready(request, timeout=2))
                if answer.ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    raise RuntimeError(f"mlserver did not report model {MODEL_NAME!r} ready in time")


def served_parity(
    address: str, messages: V2Messages, rows: NDArray[np.float64], expected: NDArray[np.float64]
) -> Parity:
    """MLServer's answers over gRPC, one row per ModelInfer call, against `expected`."""
    with grpc.insecure_channel(address) as channel:
        model_infer = _unary_call(channel, MODEL_INFER_METHOD)
        served = np.concatenate(
            [
                probabilities_in(
                    messages, model_infer(model_infer_request(messages, row), timeout=10)
                )
                for row in rows
            ]
        )
    return Parity(len(rows), float(np.max(np.abs(served - expected))))


# ----------------------------------------------------------------------------------------------
# The operation (imported by name in the load generator's worker processes)


async def model_infer(context: OperationContext) -> Operation:
    """One ModelInfer of a row picked at random from pre-serialised requests.

    The answer is parsed, as a generated stub would, so the client does the same work per call
    as for GetScore.
    """
    messages = v2_messages(context.arguments["v2_file_descriptor"])
    requests: list[bytes] = context.arguments["model_infer_requests"]
    call = context.channel.unary_unary(
        MODEL_INFER_METHOD,
        request_serializer=_raw_bytes,
        response_deserializer=messages.model_infer_response.FromString,
    )

    async def operation() -> None:
        await call(context.random.choice(requests), timeout=context.call_timeout_s)

    return operation
