"""Server reflection under both of its names, so that grpcurl, ghz and reflection clients
find every service without `.proto` files, whichever version of the protocol they ask for.

grpcio-reflection serves `grpc.reflection.v1alpha.ServerReflection` only, while current
clients ask for `grpc.reflection.v1.ServerReflection` first. The v1 messages are the v1alpha
ones under a new package name, field for field, so they are the same bytes on the wire: the
same servicer answers both, registered once under each service name.

A listed service must also be describable: a client that describes every listed service
(`grpcurl describe`) fails on the first it cannot resolve. So unless an installed package
already defines the v1 protocol, its descriptor is added to the default descriptor pool,
built from the v1alpha one under the v1 package name.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection, reflection_pb2

from services.common.runtime import GrpcServer

V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
METHOD_NAME = "ServerReflectionInfo"

V1_PACKAGE = "grpc.reflection.v1"
V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"
# Where a grpcio-reflection that ships the v1 protocol would define it.
V1_GENERATED_MODULE = "grpc_reflection.v1.reflection_pb2"

_describing_v1 = threading.Lock()


def listed_service_names(service_names: Sequence[str]) -> tuple[str, ...]:
    """What reflection lists: the registered services, health, and reflection itself."""
    return (*service_names, health.SERVICE_NAME, V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME)


def enable_reflection(server: GrpcServer, service_names: Sequence[str]) -> None:
    """Adds reflection, under both names, listing `service_names`, health and itself."""
    describe_v1_reflection(descriptor_pool.Default())
    listed = listed_service_names(service_names)
    # The type stubs give the servicers' method no common type; gRPC only calls it.
    servicer: Any = (
        reflection.aio.ReflectionServicer(listed)
        if isinstance(server, grpc.aio.Server)
        else reflection.ReflectionServicer(listed)
    )
    for service_name in (V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME):
        method_handlers = {
            METHOD_NAME: grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service_name, method_handlers),)
        )
        server.add_registered_method_handlers(service_name, method_handlers)


def describe_v1_reflection(pool: descriptor_pool.DescriptorPool) -> None:
    """Makes `pool` define the v1 reflection service, if nothing does yet."""
    with _describing_v1:
        # A real definition, once installed, is the one to serve; importing its generated
        # module adds it to the default pool.
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(V1_GENERATED_MODULE)
        try:
            pool.FindServiceByName(V1_SERVICE_NAME)
        except KeyError:
            pool.Add(v1_reflection_file())


def v1_reflection_file() -> descriptor_pb2.FileDescriptorProto:
    """The v1alpha reflection file under the v1 package name: the v1 protocol's messages
    and service, with the same fields and numbers."""
    file_proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file_proto)
    v1alpha_prefix = f".{file_proto.package}."
    v1_prefix = f".{V1_PACKAGE}."

    def renamed(type_name: str) -> str:
        return v1_prefix + type_name.removeprefix(v1alpha_prefix)

    file_proto.name = V1_FILE_NAME
    file_proto.package = V1_PACKAGE
    # The options name v1alpha's Java and Go packages and mark it deprecated; none is v1's.
    file_proto.ClearField("options")
    for message in file_proto.message_type:
        # The reflection messages nest no types, so their fields are all there is to rename.
        assert not message.nested_type, "reflection messages nest no types"
        for field in message.field:
            # Only message and enum fields name a type; setting an empty one would add one.
            if field.HasField("type_name"):
                field.type_name = renamed(field.type_name)
    for service in file_proto.service:
        for method in service.method:
            method.input_type = renamed(method.input_type)
            method.output_type = renamed(method.output_type)
    return file_proto
