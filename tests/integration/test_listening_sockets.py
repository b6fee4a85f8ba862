"""What the running platform listens on: loopback only, but for nginx and the documented ports.

The documented exception (docs/operator-guide.md, "Access Points"): each Serve replica's
inter-deployment gRPC server, which Ray 2.60 binds on all interfaces. It must refuse calls
without Ray's token.
"""

from __future__ import annotations

import ipaddress
import socket

import grpc
import psutil

from gpucluster.runtime.processes import platform_processes

GRPC_METHOD = "/ray.serve.ASGIService/HandleRequest"


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listening(live) -> list[tuple[psutil._common.sconn, str]]:
    """Every listening TCP socket of the platform's processes, with its process's name."""
    processes = {p.pid: p for p in platform_processes(str(live.state_dir.resolve()))}
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in processes:
            try:
                found.append((conn, processes[conn.pid].name()))
            except psutil.NoSuchProcess:
                continue
    return found


def outside_address() -> str:
    """An address of this host other than loopback (where a remote client would come from)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not is_loopback(address.address):
                return address.address
    raise AssertionError("this host has no address beyond loopback")


def test_only_nginx_and_the_replicas_grpc_ports_listen_beyond_loopback(live):
    sockets = listening(live)
    nginx_port = int(live.base.rsplit(":", 1)[1])
    ports = {conn.laddr.port for conn, _ in sockets}
    assert {nginx_port, 6379, 8000} <= ports, "the listing does not see the platform"
    beyond = [(conn, name) for conn, name in sockets if not is_loopback(conn.laddr.ip)]
    unexpected = [
        f"{name} on {conn.laddr.ip}:{conn.laddr.port}"
        for conn, name in beyond
        if not (name == "nginx" and conn.laddr.port == nginx_port)
        and not name.startswith("ray::ServeRepli")
    ]
    assert unexpected == []
    assert any(name == "nginx" for _, name in beyond)


def test_the_replicas_grpc_ports_refuse_calls_without_rays_token(live):
    ports = [
        conn.laddr.port
        for conn, name in listening(live)
        if name.startswith("ray::ServeRepli") and not is_loopback(conn.laddr.ip)
    ]
    assert ports, "no Serve replica listens beyond loopback: update the operator guide"
    host = outside_address()
    for port in ports:
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            call = channel.unary_unary(
                GRPC_METHOD, request_serializer=bytes, response_deserializer=bytes
            )
            try:
                call(b"", timeout=10)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (port, error)
            else:
                raise AssertionError(f"the replica on port {port} answered without a token")
