"""The accelerator probe: the tiny guest really runs (under TCG, which
works everywhere), KVM is used only when the tiny guest runs under it,
and the answer comes within the timeout and is cached per boot."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from kubevisor.runtime.qemu.probe import boot_id, boot_tiny_guest, probe
from tests.runtime.qemu.conftest import needs_qemu
from tests.runtime.qemu.guestvm import guest_image

pytestmark = needs_qemu


async def test_the_boot_sector_probe_runs_under_tcg() -> None:
    started = time.monotonic()
    assert await boot_tiny_guest("tcg", timeout=20) == ""
    assert time.monotonic() - started < 20


@pytest.mark.slow
async def test_the_linux_probe_guest_runs_under_tcg() -> None:
    assert await boot_tiny_guest("tcg", kernel=guest_image().kernel, timeout=90) == ""


async def test_a_hanging_or_failing_guest_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-kernel"
    bogus.write_bytes(b"nothing bootable here")
    reason = await boot_tiny_guest("tcg", kernel=str(bogus), timeout=20)
    assert reason.startswith("a Linux guest under tcg failed"), reason


@pytest.mark.slow
async def test_probe_answers_within_its_timeout_with_a_reason(tmp_path: Path) -> None:
    cache = tmp_path / "probe.json"
    started = time.monotonic()
    kernel = guest_image().kernel
    caps = await probe(timeout=6, cache_path=str(cache), kernel=kernel)
    # each of the two tiny guests has the timeout; a loaded host adds QEMU start-up
    assert time.monotonic() - started < 2 * 6 + 10
    assert caps.reason
    assert caps.qemu_version
    if caps.accel == "tcg" and os.path.exists("/dev/kvm"):
        # this host has /dev/kvm that cannot run guests (nested): the reason says what happened
        assert "kvm" in caps.reason.lower()
    if caps.accel == "kvm":
        assert await boot_tiny_guest("kvm", kernel=kernel, timeout=6) == ""
    recorded = json.loads(cache.read_text())
    assert recorded["boot_id"] == boot_id() and recorded["accel"] == caps.accel
    # the second call is answered from the cache, without booting anything
    started = time.monotonic()
    again = await probe(timeout=6, cache_path=str(cache), kernel=kernel)
    assert again == caps and time.monotonic() - started < 3.0  # qemu --version only


async def test_a_cache_of_another_boot_is_ignored_and_force_skips_the_probe(tmp_path: Path) -> None:
    cache = tmp_path / "probe.json"
    cache.write_text(json.dumps({"boot_id": "another-boot", "qemu_version": "0", "accel": "kvm",
                                 "reason": "stale"}))
    forced = await probe(cache_path=str(cache), force="tcg")
    assert forced.accel == "tcg" and "configuration" in forced.reason
    assert json.loads(cache.read_text())["reason"] == "stale"  # force neither reads nor writes it


async def test_without_a_kernel_to_boot_kvm_is_not_trusted(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # A boot sector runs under KVM on nested hosts whose Linux guests then hang:
    # with no kernel to try (none given, none readable in /boot), VMs use TCG.
    from kubevisor.runtime.qemu import probe as probing

    monkeypatch.setattr(probing, "host_kernel", lambda: None)
    caps = await probing.probe(cache_path=str(tmp_path / "probe.json"), timeout=6)
    assert caps.accel == "tcg"
    if os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert "no Linux kernel" in caps.reason
