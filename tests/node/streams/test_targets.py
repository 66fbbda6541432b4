"""Which container a log request reads when the agent knows the pod's
status: kubelet's choices and wording (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from kubevisor.node.streams.errors import StreamError
from kubevisor.node.streams.targets import _from_status, attempt_of_id


def _pod(state: dict[str, Any], last: dict[str, Any] | None = None, cid: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"name": "app", "state": state, "lastState": last or {}}
    if cid:
        status["containerID"] = cid
    return {"metadata": {"uid": "u"}, "status": {"containerStatuses": [status]}}


def _message(pod: dict[str, Any], *, previous: bool = False) -> str:
    with pytest.raises(StreamError) as exc:
        _from_status(pod, "web", "app", previous=previous)
    assert exc.value.code == 400
    return exc.value.message


def test_current_and_previous_from_status() -> None:
    running = _pod({"running": {}}, {"terminated": {"containerID": "runc://k1-aa-0"}},
                   cid="runc://k1-aa-1")
    assert _from_status(running, "web", "app", previous=False) == "k1-aa-1"
    assert _from_status(running, "web", "app", previous=True) == "k1-aa-0"
    # Crash loop: waiting, the last run is what both show.
    looping = _pod({"waiting": {"reason": "CrashLoopBackOff"}},
                   {"terminated": {"containerID": "crun://k1-aa-4"}}, cid="crun://k1-aa-4")
    assert _from_status(looping, "web", "app", previous=False) == "k1-aa-4"
    assert _from_status(looping, "web", "app", previous=True) == "k1-aa-4"
    assert attempt_of_id("k1-aa-4") == 4 and attempt_of_id("nonsense") is None


def test_kubelet_wording_for_containers_without_logs() -> None:
    assert _message(_pod({"running": {}}, cid="runc://k-0"), previous=True) == (
        'previous terminated container "app" in pod "web" not found')
    assert _message(_pod({"waiting": {"reason": "ContainerCreating"}})) == (
        'container "app" in pod "web" is waiting to start: ContainerCreating')
    assert _message(_pod({"waiting": {"reason": "ImagePullBackOff"}})) == (
        'container "app" in pod "web" is waiting to start: trying and failing to pull image')
    assert _message(_pod({"waiting": {"reason": "ErrImagePull"}})) == (
        'container "app" in pod "web" is waiting to start: image can\'t be pulled')
    assert _message({"status": {}}) == (
        'container "app" in pod "web" is waiting to start: ContainerCreating')
    assert _message(_pod({})) == 'container "app" in pod "web" is waiting to start - no logs yet'
