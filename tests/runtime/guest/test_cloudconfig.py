"""The test guest's seed reader, run with the same busybox awk the guest
runs: YAML flattening and the translation of cloud-config and
network-config v2 into shell, on what kubevisor's seed renderers write
and on hand-written cloud-config in the usual styles."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from kubevisor.runtime.qemu import seed

pytestmark = pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static is needed")
ROOTFS = resources.files("kubevisor.runtime.guest").joinpath("rootfs")


def flatten(text: str) -> str:
    return subprocess.run(["busybox", "awk", "-f", str(ROOTFS / "yaml.awk")], input=text,
                          capture_output=True, text=True, check=True).stdout


def translate(text: str, mode: str) -> str:
    return subprocess.run(["busybox", "awk", "-v", f"mode={mode}", "-f", str(ROOTFS / "cloudinit.awk")],
                          input=flatten(text), capture_output=True, text=True, check=True).stdout


HAND_WRITTEN = """#cloud-config
hostname: web-1
users:
  - default
  - name: root
    ssh_authorized_keys:
      - "ssh-rsa AAAB user@host"
ssh_authorized_keys: [ssh-ed25519 AAAC a@b]
write_files:
- path: /etc/app.conf
  permissions: '0600'
  content: |
    key: value
    quote ' and "double" and \\ backslash
- path: /etc/b64
  encoding: b64
  content: aGVsbG8K
runcmd:
  - echo one > /tmp/one   # a comment
  - [ sh, -c, "echo 'two, three' > /tmp/two" ]
"""


def test_flatten_covers_the_usual_styles() -> None:
    lines = flatten(HAND_WRITTEN).splitlines()
    assert "hostname=web-1" in lines
    assert "users.0=default" in lines
    assert "users.1.ssh_authorized_keys.0=ssh-rsa AAAB user@host" in lines
    assert "ssh_authorized_keys.0=ssh-ed25519 AAAC a@b" in lines
    assert "write_files.0.permissions=0600" in lines
    assert 'write_files.0.content=key: value\\nquote \' and "double" and \\\\ backslash\\n' in lines
    assert "runcmd.0=echo one > /tmp/one" in lines
    assert "runcmd.1.2=echo 'two, three' > /tmp/two" in lines


def test_user_data_becomes_a_script_that_does_it(tmp_path: Path) -> None:
    script = translate(HAND_WRITTEN.replace("/etc/", f"{tmp_path}/etc/"), "user")
    assert "set_hostname 'web-1'" in script
    body = script.replace("/root/.ssh", str(tmp_path / "ssh"))
    subprocess.run(["busybox", "sh", "-c", f"set_hostname() {{ echo \"$1\" > {tmp_path}/host; }}\n{body}"],
                   check=True)
    assert (tmp_path / "etc/app.conf").read_text() == 'key: value\nquote \' and "double" and \\ backslash\n'
    assert oct((tmp_path / "etc/app.conf").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "etc/b64").read_text() == "hello\n"
    assert (tmp_path / "ssh/authorized_keys").read_text().splitlines() == [
        "ssh-rsa AAAB user@host", "ssh-ed25519 AAAC a@b"]
    assert (tmp_path / "host").read_text() == "web-1\n"


def test_runcmd_string_and_list_forms(tmp_path: Path) -> None:
    script = translate(HAND_WRITTEN.replace("/tmp/", f"{tmp_path}/"), "runcmd")
    subprocess.run(["busybox", "sh", "-c", script], check=True)
    assert (tmp_path / "one").read_text() == "one\n"
    assert (tmp_path / "two").read_text() == "two, three\n"


def test_what_kubevisor_renders_reads_back() -> None:
    user = seed.render_user_data({"runcmd": [["sh", "-c", "echo a: b"], "echo 'x'"],
                                  "write_files": [{"path": "/f", "content": "l1\n  l2: x\n"}]})
    lines = flatten(user).splitlines()
    assert "runcmd.0.2=echo a: b" in lines and "runcmd.1=echo 'x'" in lines
    assert "write_files.0.content=l1\\n  l2: x\\n" in lines
    net = seed.render_network_config([
        {"mac": "52:54:00:00:00:01", "addresses": ["10.1.0.5/24"], "gateway": "10.1.0.1"},
        {"mac": "52:54:00:00:00:02"}])
    assert translate(net, "net").splitlines() == [
        "net_iface '52:54:00:00:00:01' 'eth0' '' '10.1.0.5/24' '10.1.0.1'",
        "net_iface '52:54:00:00:00:02' 'eth1' 'true' '' ''"]
