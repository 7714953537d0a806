"""WaiverServicer: sesame.waiver.v1.WaiverService over the waiver's use cases."""

from __future__ import annotations

from sesame.waiver.v1 import waiver_service_pb2_grpc

from services.common.server import GrpcServer

SERVICE_NAME = "sesame.waiver.v1.WaiverService"


class WaiverServicer(waiver_service_pb2_grpc.WaiverServiceServicer):
    """Every RPC not built yet answers UNIMPLEMENTED (the generated base's NotImplementedError)."""

    def add_to_server(self, server: GrpcServer) -> None:
        waiver_service_pb2_grpc.add_WaiverServiceServicer_to_server(self, server)
