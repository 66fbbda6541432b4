"""CustomResourceDefinitions through kubectl: created, established
(``kubectl wait``), served at once with short names, categories, printer
columns, schema validation, status and scale subresources; deleting the
CRD removes its objects."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.output import AGE, header, table
from tests.support.server import KubevisorServer, unique

# one worker runs the module: one server per store, shared by its tests
pytestmark = pytest.mark.xdist_group("e2e-kubectl-crd")


@dataclass(frozen=True)
class Crd:
    group: str
    plural: str = "widgets"
    kind: str = "Widget"

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def resource(self) -> str:
        """Fully qualified: every test's CRD has the same plural in its own group."""
        return f"{self.plural}.{self.group}"

    @property
    def category(self) -> str:
        return self.group.split(".")[0]

    @property
    def short(self) -> str:
        return f"wd{self.category[-6:]}"

    def manifest(self) -> str:
        schema = {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 100},
                        "color": {"type": "string", "enum": ["red", "green", "blue"]},
                        "replicas": {"type": "integer"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "replicas": {"type": "integer"},
                        "phase": {"type": "string"},
                        "conditions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "type": {"type": "string"},
                                    "status": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        }
        return json.dumps(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": self.name},
                "spec": {
                    "group": self.group,
                    "scope": "Namespaced",
                    "names": {
                        "plural": self.plural,
                        "singular": self.kind.lower(),
                        "kind": self.kind,
                        "shortNames": [self.short],
                        "categories": [self.category],
                    },
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {"openAPIV3Schema": schema},
                            "subresources": {
                                "status": {},
                                "scale": {
                                    "specReplicasPath": ".spec.replicas",
                                    "statusReplicasPath": ".status.replicas",
                                },
                            },
                            "additionalPrinterColumns": [
                                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                                {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                                {
                                    "name": "Tags",
                                    "type": "string",
                                    "jsonPath": ".spec.tags",
                                    "priority": 1,
                                },
                                {
                                    "name": "Age",
                                    "type": "date",
                                    "jsonPath": ".metadata.creationTimestamp",
                                },
                            ],
                        }
                    ],
                },
            }
        )

    def widget(self, name: str, namespace: str, **spec: object) -> str:
        return json.dumps(
            {
                "apiVersion": f"{self.group}/v1",
                "kind": self.kind,
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }
        )


@pytest.fixture
def crd(server: KubevisorServer) -> Iterator[Crd]:
    """A fresh Widget CRD (unique group), established."""
    crd = Crd(group=f"{unique('e2e')}.kubevisor.test")
    out = server.kubectl("apply", "-f", "-", input=crd.manifest()).stdout
    assert out.strip() == f"customresourcedefinition.apiextensions.k8s.io/{crd.name} created"
    waited = server.kubectl(
        "wait", "--for=condition=Established", f"crd/{crd.name}", "--timeout=30s"
    ).stdout
    assert waited.strip() == (
        f"customresourcedefinition.apiextensions.k8s.io/{crd.name} condition met"
    )
    yield crd
    server.kubectl("delete", "crd", crd.name, "--wait=false", "--ignore-not-found", check=False)


def test_crd_status_and_discovery(server: KubevisorServer, crd: Crd) -> None:
    obj = server.kubectl_json("get", "crd", crd.name)
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert obj["status"]["acceptedNames"]["kind"] == crd.kind
    resources = server.kubectl("api-resources", "--api-group", crd.group).stdout
    assert table(resources) == [
        {
            "NAME": crd.plural,
            "SHORTNAMES": crd.short,
            "APIVERSION": f"{crd.group}/v1",
            "NAMESPACED": "true",
            "KIND": crd.kind,
        }
    ]
    assert f"{crd.group}/v1" in server.kubectl("api-versions").stdout.split()


def test_custom_resource_printer_columns(server: KubevisorServer, crd: Crd, ns: str) -> None:
    out = server.kubectl(
        "apply", "-f", "-", input=crd.widget("w1", ns, size=3, color="blue", tags=["a", "b"])
    ).stdout
    assert out.strip() == f"{crd.kind.lower()}.{crd.group}/w1 created"
    server.kubectl("apply", "-f", "-", input=crd.widget("w2", ns, size=7))

    out = server.kubectl("get", crd.resource, "-n", ns).stdout
    assert header(out) == ["NAME", "SIZE", "COLOR", "PHASE", "AGE"]
    rows = table(out)
    assert [(r["NAME"], r["SIZE"], r["COLOR"], r["PHASE"]) for r in rows] == [
        ("w1", "3", "blue", ""),
        ("w2", "7", "", ""),
    ]
    assert AGE.match(rows[0]["AGE"]), rows
    wide = server.kubectl("get", crd.resource, "w1", "-n", ns, "-o", "wide").stdout
    assert header(wide) == ["NAME", "SIZE", "COLOR", "PHASE", "TAGS", "AGE"]
    assert table(wide)[0]["TAGS"] == '["a","b"]', wide

    by_short = server.kubectl("get", crd.short, "-n", ns, "-o", "name").stdout.split()
    assert sorted(by_short) == [
        f"{crd.kind.lower()}.{crd.group}/w1",
        f"{crd.kind.lower()}.{crd.group}/w2",
    ]
    by_category = server.kubectl("get", crd.category, "-n", ns, "-o", "name").stdout.split()
    assert sorted(by_category) == sorted(by_short)
    fq = server.kubectl("get", crd.resource, "w1", "-n", ns, "-o", "name").stdout
    assert fq.strip() == f"{crd.kind.lower()}.{crd.group}/w1"
    assert (
        server.apply_yaml(crd.widget("w1", ns, size=3, color="blue", tags=["a", "b"])).strip()
        == f"{crd.kind.lower()}.{crd.group}/w1 unchanged"
    )
    ssa = server.apply_yaml(crd.widget("w3", ns, size=1), "--server-side")
    assert ssa.strip() == f"{crd.kind.lower()}.{crd.group}/w3 serverside-applied"


def test_custom_resource_validation(server: KubevisorServer, crd: Crd, ns: str) -> None:
    wrong_type = server.kubectl(
        "apply", "-f", "-", input=crd.widget("bad", ns, size="big"), check=False
    )
    assert wrong_type.returncode == 1
    assert f'The {crd.kind} "bad" is invalid: ' in wrong_type.stderr, wrong_type.stderr
    assert (
        'spec.size: Invalid value: "string": spec.size in body must be of type integer: '
        '"string"' in wrong_type.stderr
    ), wrong_type.stderr

    several = server.kubectl(
        "apply", "-f", "-", input=crd.widget("bad", ns, size=500, color="pink"), check=False
    )
    assert several.returncode == 1
    lines = several.stderr.splitlines()
    assert lines[0] == f'The {crd.kind} "bad" is invalid: ', several.stderr
    assert (
        '* spec.color: Unsupported value: "pink": supported values: "red", "green", "blue"' in lines
    ), several.stderr
    assert (
        "* spec.size: Invalid value: 500: spec.size in body should be less than or equal "
        "to 100" in lines
    ), several.stderr

    missing = server.kubectl("apply", "-f", "-", input=crd.widget("bad", ns), check=False)
    assert "spec.size: Required value" in missing.stderr, missing.stderr

    unknown = server.kubectl(
        "apply", "-f", "-", input=crd.widget("bad", ns, size=1, bogus=True), check=False
    )
    assert unknown.returncode == 1
    assert 'unknown field "spec.bogus"' in unknown.stderr, unknown.stderr
    assert server.kubectl("get", crd.resource, "bad", "-n", ns, check=False).returncode == 1


def test_custom_resource_patch_status_scale(server: KubevisorServer, crd: Crd, ns: str) -> None:
    server.apply_yaml(crd.widget("w", ns, size=2, replicas=1))
    res = f"{crd.resource}/w"

    strategic = server.kubectl("patch", res, "-n", ns, "-p", '{"spec":{"size":4}}', check=False)
    assert strategic.returncode == 1
    assert "UnsupportedMediaType" in strategic.stderr or "not supported" in strategic.stderr, (
        strategic.stderr
    )
    server.kubectl("patch", res, "-n", ns, "--type=merge", "-p", '{"spec":{"size":4}}')
    server.kubectl(
        "patch",
        res,
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"add","path":"/spec/color","value":"red"}]',
    )
    obj = server.kubectl_json("get", res, "-n", ns)
    assert obj["spec"] == {"size": 4, "replicas": 1, "color": "red"}
    generation = obj["metadata"]["generation"]
    assert generation == 3

    # .status is ignored on the main resource and written through /status only
    server.kubectl("patch", res, "-n", ns, "--type=merge", "-p", '{"status":{"phase":"Ignored"}}')
    assert (
        "status" not in server.kubectl_json("get", res, "-n", ns)
        or server.kubectl_json("get", res, "-n", ns)["status"].get("phase") != "Ignored"
    )
    server.kubectl(
        "patch",
        res,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Ready","replicas":1}}',
    )
    obj = server.kubectl_json("get", res, "-n", ns)
    assert obj["status"]["phase"] == "Ready"
    assert obj["metadata"]["generation"] == generation  # status writes don't bump generation
    [row] = table(server.kubectl("get", res, "-n", ns).stdout)
    assert (row["NAME"], row["SIZE"], row["COLOR"], row["PHASE"]) == ("w", "4", "red", "Ready")

    out = server.kubectl("scale", res, "-n", ns, "--replicas=6").stdout
    assert out.strip() == f"{crd.kind.lower()}.{crd.group}/w scaled"
    assert server.kubectl_json("get", res, "-n", ns)["spec"]["replicas"] == 6


def test_explain_custom_resource(server: KubevisorServer, crd: Crd) -> None:
    deadline = time.monotonic() + 10
    while True:  # the OpenAPI document follows the CRD
        result = server.kubectl(
            "explain", f"{crd.plural}.spec", f"--api-version={crd.group}/v1", check=False
        )
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^KIND:\s+{crd.kind}$", out, re.M), out
    assert re.search(rf"^GROUP:\s+{re.escape(crd.group)}$", out, re.M), out
    assert re.search(r"^\s+size\s+<integer> -required-", out, re.M), out
    assert re.search(r"^\s+tags\s+<\[\]string>", out, re.M), out


def test_deleting_crd_deletes_its_objects(server: KubevisorServer, crd: Crd, ns: str) -> None:
    for i in range(3):
        server.apply_yaml(crd.widget(f"d{i}", ns, size=1))
    out = server.kubectl("delete", "crd", crd.name, "--timeout=60s").stdout
    assert out.strip() == f'customresourcedefinition.apiextensions.k8s.io "{crd.name}" deleted'
    path = f"/apis/{crd.group}/v1/namespaces/{ns}/{crd.plural}"
    gone = server.kubectl("get", "--raw", path, check=False)
    assert gone.returncode == 1
    assert "NotFound" in gone.stderr, gone.stderr
    groups = server.kubectl("api-versions").stdout.split()
    assert f"{crd.group}/v1" not in groups
    # re-creating the CRD serves an empty collection: the old objects did not survive
    server.kubectl("apply", "-f", "-", input=crd.manifest())
    server.kubectl("wait", "--for=condition=Established", f"crd/{crd.name}", "--timeout=30s")
    deadline = time.monotonic() + 10
    while True:
        again = server.kubectl("get", crd.resource, "-n", ns, "-o", "name", check=False)
        if again.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == []
