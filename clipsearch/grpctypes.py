"""grpc's generic base classes: parameterized for the type checker, plain at run time (they are not subscriptable)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    ServerInterceptor = grpc.ServerInterceptor[Any, Any]
    RpcMethodHandler = grpc.RpcMethodHandler[Any, Any]
    UnaryUnaryClientInterceptor = grpc.UnaryUnaryClientInterceptor[Any, Any]
    UnaryStreamClientInterceptor = grpc.UnaryStreamClientInterceptor[Any, Any]
    StreamUnaryClientInterceptor = grpc.StreamUnaryClientInterceptor[Any, Any]
    StreamStreamClientInterceptor = grpc.StreamStreamClientInterceptor[Any, Any]
else:
    ServerInterceptor = grpc.ServerInterceptor
    RpcMethodHandler = grpc.RpcMethodHandler
    UnaryUnaryClientInterceptor = grpc.UnaryUnaryClientInterceptor
    UnaryStreamClientInterceptor = grpc.UnaryStreamClientInterceptor
    StreamUnaryClientInterceptor = grpc.StreamUnaryClientInterceptor
    StreamStreamClientInterceptor = grpc.StreamStreamClientInterceptor

__all__ = [
    "RpcMethodHandler",
    "ServerInterceptor",
    "StreamStreamClientInterceptor",
    "StreamUnaryClientInterceptor",
    "UnaryStreamClientInterceptor",
    "UnaryUnaryClientInterceptor",
]
