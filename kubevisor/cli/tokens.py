"""``kubevisor token create``: a bootstrap token for ``kubevisor join``.

As ``kubeadm token create``: a random ``<id>.<secret>`` (6 and 16 of
``[a-z0-9]``) stored as the Secret ``kube-system/bootstrap-token-<id>``
(type ``bootstrap.kubernetes.io/token``, usable for authentication and
signing, extra group ``system:bootstrappers:kubeadm:default-node-token``,
expiring after ``--ttl``), and a signature of ``cluster-info`` by it (what
kubeadm's bootstrap signer adds) so that a joining host can check the
server. The apiserver authenticates such tokens
(:mod:`kubevisor.apiserver.bootstrap`). Called by :mod:`kubevisor.cli.main`
through :data:`token_app`, and by tests through :func:`create_token`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
import secrets
import string
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from kubevisor.cli.clusterinfo import JWS_PREFIX, NAME, NAMESPACE, ca_cert_hash, sign
from kubevisor.client import ApiError, Client, ClientError, NotFoundError

DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"
_ALPHABET = string.ascii_lowercase + string.digits
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

token_app = typer.Typer(help="Bootstrap tokens for joining hosts.", no_args_is_help=True)


def generate_token() -> str:
    pick = secrets.choice
    return "".join(pick(_ALPHABET) for _ in range(6)) + "." + \
        "".join(pick(_ALPHABET) for _ in range(16))


def parse_duration(text: str) -> dt.timedelta:
    """Go-style ``24h``, ``1h30m``, ``90s``; ``0`` means never expires."""
    if text.strip() == "0":
        return dt.timedelta(0)
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"--ttl {text!r}: expected a duration such as 24h, 30m or 0")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)


def token_secret(token: str, *, ttl: dt.timedelta, now: dt.datetime | None = None,
                 description: str = "", groups: tuple[str, ...] = (DEFAULT_GROUP,)) -> dict[str, Any]:
    """The Secret that makes ``token`` valid (expiring ``ttl`` after ``now``
    unless ``ttl`` is zero)."""
    token_id, _, token_secret_ = token.partition(".")
    data = {"token-id": token_id, "token-secret": token_secret_,
            "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
            "auth-extra-groups": ",".join(groups)}
    if ttl:
        expires = (now or dt.datetime.now(dt.UTC)) + ttl
        data["expiration"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    if description:
        data["description"] = description
    return {"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


async def create_token(client: Client, *, ttl: dt.timedelta = dt.timedelta(hours=24),
                       description: str = "") -> str:
    """Store a new token and sign cluster-info with it; returns the token."""
    token = generate_token()
    await client.create(token_secret(token, ttl=ttl, description=description))
    await sign_cluster_info(client, token)
    return token


async def sign_cluster_info(client: Client, token: str) -> None:
    """Add ``jws-kubeconfig-<id>`` to cluster-info (absent cluster-info: nothing)."""
    for _ in range(5):
        try:
            cm = await client.get("v1", "ConfigMap", NAME, namespace=NAMESPACE)
        except NotFoundError:
            return
        data = dict(cm.get("data") or {})
        data[JWS_PREFIX + token.partition(".")[0]] = sign(data.get("kubeconfig", ""), token)
        cm["data"] = data
        try:
            await client.update(cm)
            return
        except ApiError as exc:
            if exc.code != 409:
                raise


async def server_ca_hash(client: Client) -> str:
    """The ``--ca-cert-hash`` of the server's CA, from cluster-info."""
    cm = await client.get("v1", "ConfigMap", NAME, namespace=NAMESPACE)
    import yaml

    cluster = yaml.safe_load(cm["data"]["kubeconfig"])["clusters"][0]["cluster"]
    return ca_cert_hash(base64.b64decode(cluster["certificate-authority-data"]))


@token_app.command("create")
def create(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The server's data dir (its "
                                           "admin kubeconfig is used).")] = Path(".kubevisor"),
    kubeconfig: Annotated[Path | None, typer.Option(help="Admin kubeconfig (default: "
                                                    "<data-dir>/kubeconfig).")] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 24h; 0: never expires.")] = "24h",
    description: Annotated[str, typer.Option(help="Shown with the token.")] = "",
    print_join_command: Annotated[bool, typer.Option(
        "--print-join-command", help="Print the whole kubevisor join command.")] = False,
) -> None:
    """Create a bootstrap token and print it (``<id>.<secret>``)."""
    try:
        lifetime = parse_duration(ttl)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    path = kubeconfig or data_dir / "kubeconfig"

    async def run() -> str:
        async with Client.from_kubeconfig(path) as client:
            token = await create_token(client, ttl=lifetime, description=description)
            if not print_join_command:
                return token
            return (f"kubevisor join --server {client.server} --token {token} "
                    f"--ca-cert-hash {await server_ca_hash(client)}")

    try:
        typer.echo(asyncio.run(run()))
    except (ClientError, httpx.HTTPError, KeyError, OSError) as exc:
        typer.echo(f"error: cannot create a token: {exc}", err=True)
        raise typer.Exit(1) from exc
