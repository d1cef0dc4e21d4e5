"""The real node's configuration keeps the test bed's network rule: the kubelet and containerd on loopback only."""

from __future__ import annotations

from pathlib import Path

from testbed import node


def test_kubelet_binds_loopback_and_serves_no_read_only_port(tmp_path: Path) -> None:
    config = node.kubelet_config(tmp_path, port=40001, healthz_port=40002)
    assert config["address"] == "127.0.0.1" and config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert config["authorization"] == {"mode": "AlwaysAllow"}  # reachable from 127.0.0.1 only
    assert str(config["containerRuntimeEndpoint"]).startswith(f"unix://{tmp_path}/")


def test_containerd_listens_on_a_socket_in_its_folder_with_loopback_only_networking(tmp_path: Path) -> None:
    text = node.containerd_config(tmp_path)
    assert f'address = "{tmp_path}/containerd.sock"' in text
    assert 'address = ""' in text  # neither the debug nor the metrics endpoint listens on TCP
    assert f'conf_dir = "{tmp_path}/cni"' in text and 'BinaryName = "/usr/sbin/runc"' in text


def test_the_sysctls_the_kubelet_changes_are_saved() -> None:
    saved = node.read_sysctls()
    assert {"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"} <= set(saved)
