"""What kubectl prints when the server says no: invalid objects (the
"is invalid" lines built from the Status causes), strict field validation
(kubectl's default ``--validate=strict``), unknown kinds, bad credentials."""

from __future__ import annotations

import json

import pytest

from tests.e2e import manifests
from tests.support.server import KubevisorServer

# one worker runs the module: one server per store, shared by its tests
pytestmark = pytest.mark.xdist_group("e2e-kubectl-errors")


def test_invalid_pod_single_cause(server: KubevisorServer, ns: str) -> None:
    bad = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "bad", "namespace": ns},
            "spec": {"containers": [{"name": "main"}]},
        }
    )
    for verb in ("create", "apply"):
        result = server.kubectl(verb, "-f", "-", input=bad, check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            'The Pod "bad" is invalid: spec.containers[0].image: Required value'
        ), result.stderr
    assert server.kubectl("get", "pod", "bad", "-n", ns, check=False).returncode == 1


def test_invalid_pod_several_causes(server: KubevisorServer, ns: str) -> None:
    bad = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "worse", "namespace": ns},
            "spec": {
                "containers": [{"name": "main"}, {"name": "main", "image": "x"}],
                "restartPolicy": "Sometimes",
            },
        }
    )
    result = server.kubectl("apply", "-f", "-", input=bad, check=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == 'The Pod "worse" is invalid: ', result.stderr
    causes = set(lines[1:])
    assert "* spec.containers[0].image: Required value" in causes, result.stderr
    assert '* spec.containers[1].name: Duplicate value: "main"' in causes, result.stderr
    assert (
        '* spec.restartPolicy: Unsupported value: "Sometimes": supported values: '
        '"Always", "OnFailure", "Never"'
    ) in causes, result.stderr


def test_invalid_name(server: KubevisorServer, ns: str) -> None:
    result = server.kubectl(
        "create", "-f", "-", input=manifests.configmap("Not_Valid", namespace=ns), check=False
    )
    assert result.returncode == 1
    assert (
        'The ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid": '
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"
    ) in result.stderr, result.stderr


def test_invalid_deployment_selector(server: KubevisorServer, ns: str) -> None:
    text = manifests.deployment("sel", namespace=ns).replace(
        'matchLabels: {"app": "sel"}', 'matchLabels: {"app": "other"}'
    )
    result = server.kubectl("apply", "-f", "-", input=text, check=False)
    assert result.returncode == 1
    assert 'The Deployment "sel" is invalid: spec.template.metadata.labels: Invalid value: ' in (
        result.stderr
    ), result.stderr
    assert "`selector` does not match template `labels`" in result.stderr


def test_unknown_field_is_rejected_by_default(server: KubevisorServer, ns: str) -> None:
    obj = json.loads(manifests.pod("strict", namespace=ns))
    obj["spec"]["colour"] = "blue"
    obj["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    text = json.dumps(obj)
    result = server.kubectl("apply", "-f", "-", input=text, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("Error from server (BadRequest): "), result.stderr
    assert "strict decoding error: " in result.stderr, result.stderr
    assert 'unknown field "spec.colour"' in result.stderr, result.stderr
    assert 'unknown field "spec.containers[0].imagePullPolicyy"' in result.stderr, result.stderr
    assert server.kubectl("get", "pod", "strict", "-n", ns, check=False).returncode == 1

    created = server.kubectl("create", "-f", "-", input=text, check=False)
    assert created.returncode == 1 and 'unknown field "spec.colour"' in created.stderr

    warned = server.kubectl("apply", "--validate=warn", "-f", "-", input=text)
    assert warned.stdout.strip() == "pod/strict created"
    assert 'Warning: unknown field "spec.colour"' in warned.stderr, warned.stderr
    stored = server.kubectl_json("get", "pod", "strict", "-n", ns)
    assert "colour" not in stored["spec"]

    obj["metadata"]["name"] = "lax"
    ignored = server.kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(obj))
    assert ignored.stdout.strip() == "pod/lax created"
    assert "Warning" not in ignored.stderr


def test_unknown_field_in_server_side_apply_and_patch(server: KubevisorServer, ns: str) -> None:
    text = manifests.configmap("ssa-strict", namespace=ns, data={"a": "b"})
    obj = json.loads(text)
    obj["extra"] = 1
    result = server.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(obj), check=False)
    assert result.returncode == 1
    assert ".extra: field not declared in schema" in result.stderr, result.stderr

    server.kubectl("apply", "-f", "-", input=text)
    # kubectl patch sends no fieldValidation: the server's default is Warn
    patched = server.kubectl(
        "patch", "configmap", "ssa-strict", "-n", ns, "--type=merge", "-p", '{"extra":1}'
    )
    assert patched.stdout.strip() == "configmap/ssa-strict patched (no change)", patched.stdout
    assert 'Warning: unknown field "extra"' in patched.stderr, patched.stderr
    with server.client() as http:
        response = http.patch(
            f"/api/v1/namespaces/{ns}/configmaps/ssa-strict",
            params={"fieldValidation": "Strict"},
            content=b'{"extra":1}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
    assert response.status_code == 400, response.text
    status = response.json()
    assert status["reason"] == "BadRequest"
    assert status["message"] == 'strict decoding error: unknown field "extra"', status


def test_unknown_kind_and_version(server: KubevisorServer, ns: str) -> None:
    bogus = json.dumps({"apiVersion": "v1", "kind": "Bogus", "metadata": {"name": "x"}})
    result = server.kubectl("apply", "-n", ns, "-f", "-", input=bogus, check=False)
    assert result.returncode == 1
    assert 'no matches for kind "Bogus" in version "v1"' in result.stderr, result.stderr
    wrong_group = json.dumps(
        {"apiVersion": "nope.example.com/v9", "kind": "Pod", "metadata": {"name": "x"}}
    )
    result = server.kubectl("apply", "-n", ns, "-f", "-", input=wrong_group, check=False)
    assert 'no matches for kind "Pod" in version "nope.example.com/v9"' in result.stderr


def test_unknown_resource_type(server: KubevisorServer) -> None:
    result = server.kubectl("get", "flurbs", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ('error: the server doesn\'t have a resource type "flurbs"'), (
        result.stderr
    )


def test_malformed_manifest(server: KubevisorServer, ns: str) -> None:
    result = server.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input="apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n",
        check=False,
    )
    assert result.returncode == 1
    assert "error" in result.stderr.lower()


def test_unauthorized(server: KubevisorServer) -> None:
    result = server.kubectl("get", "namespaces", "--token=not-the-token", check=False)
    assert result.returncode == 1
    assert "error: You must be logged in to the server (Unauthorized)" in result.stderr, (
        result.stderr
    )
    with server.client(auth=False) as http:
        response = http.get("/api/v1/namespaces")
    assert response.status_code == 401
    body = response.json()
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized" and body["code"] == 401


def test_immutable_metadata(server: KubevisorServer, ns: str) -> None:
    server.create_configmap("fixed", ns)
    renamed = server.kubectl(
        "patch", "cm", "fixed", "-n", ns, "--type=merge", "-p", '{"metadata":{"name":"x"}}',
        check=False,
    )  # fmt: skip
    assert renamed.returncode == 1
    assert (
        "Error from server (BadRequest): the name of the object (x) does not match the name "
        "on the URL (fixed)"
    ) in renamed.stderr, renamed.stderr
    new_uid = server.kubectl(
        "patch", "cm", "fixed", "-n", ns, "--type=merge", "-p", '{"metadata":{"uid":"x"}}',
        check=False,
    )  # fmt: skip
    assert new_uid.returncode == 1
    assert (
        'The ConfigMap "fixed" is invalid: metadata.uid: Invalid value: "x": field is immutable'
    ) in new_uid.stderr, new_uid.stderr


def test_deployment_selector_is_immutable(server: KubevisorServer, ns: str) -> None:
    server.apply_yaml(manifests.deployment("sel-fixed", namespace=ns))
    patch = {"spec": {"selector": {"matchLabels": {"app": "other"}},
                      "template": {"metadata": {"labels": {"app": "other"}}}}}  # fmt: skip
    result = server.kubectl(
        "patch", "deploy", "sel-fixed", "-n", ns, "--type=merge", "-p", json.dumps(patch),
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(
        'The Deployment "sel-fixed" is invalid: spec.selector: Invalid value: '
    ), result.stderr
    assert "field is immutable" in result.stderr


def test_pod_spec_is_mostly_immutable(server: KubevisorServer, ns: str) -> None:
    server.kubectl("create", "-f", "-", input=manifests.pod("frozen", namespace=ns))
    image = server.kubectl(
        "patch", "pod", "frozen", "-n", ns, "-p",
        '{"spec":{"containers":[{"name":"main","image":"nginx:1.28"}]}}',
    )  # fmt: skip
    assert image.stdout.strip() == "pod/frozen patched"
    result = server.kubectl(
        "patch", "pod", "frozen", "-n", ns, "--type=merge",
        "-p", '{"spec":{"restartPolicy":"Never"}}', check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert 'The Pod "frozen" is invalid: spec: Forbidden: pod updates may not change fields ' \
        "other than `spec.containers[*].image`" in result.stderr, result.stderr


def test_immutable_secret(server: KubevisorServer, ns: str) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sealed", "namespace": ns},
              "immutable": True, "stringData": {"a": "b"}}  # fmt: skip
    server.kubectl("create", "-f", "-", input=json.dumps(secret))
    result = server.kubectl(
        "patch", "secret", "sealed", "-n", ns, "--type=merge", "-p", '{"stringData":{"a":"c"}}',
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        'The Secret "sealed" is invalid: data: Forbidden: field is immutable when `immutable` is set'
    ) in result.stderr, result.stderr
