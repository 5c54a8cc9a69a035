"""A hung API server cannot block a worker: every request has a timeout.

The peer here is a TCP socket that accepts connections and never answers, the way a stuck
proxy or a partitioned API server behaves; nothing of the Kubernetes API is imitated.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from qmo.kube import TRANSIENT_ERRORS, Kube


@pytest.fixture
def silent_server() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # and never answer
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_request_to_a_server_that_never_answers_fails_within_its_timeout(
    silent_server: str,
) -> None:
    configuration = client.Configuration()
    configuration.host = silent_server
    configuration.retries = False
    kube = Kube(client.ApiClient(configuration), timeout=(1.0, 1.0))
    started = time.monotonic()
    with pytest.raises(TRANSIENT_ERRORS):
        kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "x", "namespace": "y"}})  # fmt: skip
    assert time.monotonic() - started < 10
