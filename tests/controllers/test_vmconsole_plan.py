"""The web console request controller's pure parts: the plan (expiry,
answered, VM missing or not placed, bad key, issue), the ticket metadata,
the proxy address; and the ticket cipher (upstream's RSA-OAEP SHA-512,
keys in X.509 or PKCS#1 PEM) and digest."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubevisor.api.vmoperator import console
from kubevisor.controllers.vmconsole import (
    UNANSWERED_TTL,
    Delete,
    Issue,
    Refuse,
    Wait,
    plan,
    proxy_address,
    with_ticket_metadata,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def request(key: rsa.RSAPrivateKey, **status: str) -> dict:
    return {"metadata": {"name": "r", "namespace": "ns", "uid": "req-uid",
                         "creationTimestamp": stamp(NOW - timedelta(seconds=5))},
            "spec": {"name": "vm1", "publicKey": console.public_key_pem(key)},
            "status": status}


VM = {"apiVersion": "vmoperator.vmware.com/v1alpha6", "kind": "VirtualMachine",
      "metadata": {"name": "vm1", "namespace": "ns", "uid": "vm-uid"},
      "status": {"nodeName": "n1"}}


def test_plan_issues_for_a_placed_vm(key: rsa.RSAPrivateKey) -> None:
    assert plan(request(key), VM, now=NOW) == Issue(VM)
    assert plan(None, VM, now=NOW) is None
    deleting = request(key)
    deleting["metadata"]["deletionTimestamp"] = stamp(NOW)
    assert plan(deleting, VM, now=NOW) is None


def test_plan_waits_for_expiry_then_deletes(key: rsa.RSAPrivateKey) -> None:
    answered = request(key, response="x", proxyAddr="h:1",
                       expiryTime=stamp(NOW + timedelta(seconds=90)))
    assert plan(answered, VM, now=NOW) == Wait(90.0)
    assert isinstance(plan(answered, VM, now=NOW + timedelta(seconds=90)), Delete)
    assert isinstance(plan(answered, None, now=NOW + timedelta(seconds=91)), Delete)


def test_plan_deletes_requests_never_answered(key: rsa.RSAPrivateKey) -> None:
    later = NOW + timedelta(seconds=UNANSWERED_TTL)
    action = plan(request(key), None, now=later)
    assert isinstance(action, Delete) and "not answered" in action.why


def test_plan_refusals_say_what_to_do(key: rsa.RSAPrivateKey) -> None:
    missing = plan(request(key), None, now=NOW)
    assert isinstance(missing, Refuse) and missing.reason == "VirtualMachineNotFound"
    assert '"vm1"' in missing.message and '"ns"' in missing.message and missing.retry_after
    unplaced = plan(request(key), {**VM, "status": {}}, now=NOW)
    assert isinstance(unplaced, Refuse) and unplaced.reason == "VirtualMachineNotPlaced"
    assert unplaced.retry_after
    bad = request(key)
    bad["spec"]["publicKey"] = "ssh-rsa AAAA"
    refused = plan(bad, VM, now=NOW)
    assert isinstance(refused, Refuse) and refused.reason == "InvalidPublicKey"
    assert refused.retry_after is None and "PEM" in refused.message


def test_ticket_metadata_binds_request_and_vm(key: rsa.RSAPrivateKey) -> None:
    original = request(key)
    body = with_ticket_metadata(original, VM, "abc")
    md = body["metadata"]
    assert md["annotations"][console.TICKET_ANNOTATION] == "abc"
    assert md["labels"][console.UUID_LABEL] == "req-uid"
    assert md["ownerReferences"] == [{"apiVersion": "vmoperator.vmware.com/v1alpha6",
                                      "kind": "VirtualMachine", "name": "vm1", "uid": "vm-uid",
                                      "controller": True}]
    assert "annotations" not in original["metadata"]  # the cached object is untouched


def test_proxy_address() -> None:
    assert proxy_address("https://127.0.0.1:6443") == "127.0.0.1:6443"
    assert proxy_address("https://api.example") == "api.example:443"
    assert proxy_address("https://[::1]:6443") == "[::1]:6443"


def test_cipher_round_trips_in_every_pem_shape(key: rsa.RSAPrivateKey) -> None:
    ticket = console.new_ticket()
    spki = console.public_key_pem(key)
    pkcs1 = key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.PKCS1).decode()
    upstream_go = pkcs1.replace("RSA PUBLIC KEY", "PUBLIC KEY")  # what vm-operator's Go reads
    for pem in (spki, pkcs1, upstream_go):
        response = console.encrypt(pem, ticket)
        assert len(base64.b64decode(response)) == 256
        assert console.decrypt(key, response) == ticket
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError):
        console.decrypt(other, console.encrypt(spki, ticket))


def test_keys_that_cannot_be_used() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for pem, words in (("", "not PEM"), ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                                         "neither"),
                       (console.public_key_pem(small), "1024-bit"), (ec_pem, "not an RSA key")):
        with pytest.raises(console.PublicKeyError, match=words):
            console.load_public_key(pem)


def test_digest_is_bound_to_request_vm_and_ticket() -> None:
    digest = console.ticket_digest("r", "v", "t")
    assert console.ticket_matches(digest, "r", "v", "t")
    assert not console.ticket_matches(digest, "r2", "v", "t")
    assert not console.ticket_matches(digest, "r", "v2", "t")
    assert not console.ticket_matches(digest, "r", "v", "t2")
    assert not console.ticket_matches("", "r", "v", "")
    assert console.console_path("ns", "r") == (
        "/apis/vmoperator.vmware.com/v1alpha6/namespaces/ns/"
        "virtualmachinewebconsolerequests/r/console")
