"""The watch-fed SyncJob cache through an API-server outage: reads keep serving the last known SyncJobs, health
says the cache is stale, and once the API server is back the cache relists and catches up with what changed."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import yaml
from kubernetes import client

from syncjob import names
from testbed.cluster import LocalCluster
from testbed.procs import free_port
from tests.api.conftest import Api
from tests.conftest import make_syncjob


class TcpProxy:
    """127.0.0.1:port → the API server; stop() drops the listener and every open connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                down, _ = listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
            self.listener.close()
            self.listener = None
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.conns.clear()


def test_cache_serves_through_an_outage_and_relists_after_it(make_api: Callable[..., Api], cluster: LocalCluster,
                                                             tmp_path: Path, k8s: client.ApiClient) -> None:
    proxy = TcpProxy(cluster.api_port).start()
    try:
        kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
        kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        path = tmp_path / "proxied.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        api = make_api(kubeconfig=str(path))
        api.create_syncjob("alpha")

        proxy.stop()
        Api.wait_for(lambda: api.get("/health").json()["data"]["components"]["cache"]["stale"], "a stale cache")
        health = api.get("/health").json()["data"]
        assert {"kubernetes", "cache"} <= set(health["down"])
        assert "serving the last known SyncJobs" in health["components"]["cache"]["message"]
        assert [j["id"] for j in api.get("/jobs").json()["data"]] == ["alpha"]  # reads still served
        client.CustomObjectsApi(k8s).create_namespaced_custom_object(
            names.GROUP, names.VERSION, api.namespace, names.PLURAL, make_syncjob("beta"))

        proxy.start()
        Api.wait_for(lambda: len(api.get("/jobs").json()["data"]) == 2, "the relist after the outage", timeout=60)
        cache = api.get("/health").json()["data"]["components"]["cache"]
        assert cache["ok"] is True and cache["stale"] is False
    finally:
        proxy.stop()
