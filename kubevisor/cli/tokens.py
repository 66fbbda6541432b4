"""``kubevisor token create|list|delete``: bootstrap tokens for ``kubevisor join``.

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


async def list_tokens(client: Client) -> list[dict[str, str]]:
    """The bootstrap tokens stored (id, expiration, usages, groups, description)."""
    secrets_ = await client.list("v1", "Secret", namespace="kube-system",
                                 field_selector="type=bootstrap.kubernetes.io/token")
    out = []
    for secret in secrets_["items"]:
        data = {k: base64.b64decode(v).decode(errors="replace")
                for k, v in (secret.get("data") or {}).items()}
        usages = [k.removeprefix("usage-bootstrap-") for k, v in sorted(data.items())
                  if k.startswith("usage-bootstrap-") and v == "true"]
        out.append({"id": data.get("token-id", ""), "expires": data.get("expiration", "<forever>"),
                    "usages": ",".join(usages), "groups": data.get("auth-extra-groups", ""),
                    "description": data.get("description", "")})
    return sorted(out, key=lambda t: t["id"])


async def delete_token(client: Client, token_id: str) -> None:
    """Delete the token's Secret and its signature in cluster-info."""
    token_id = token_id.partition(".")[0]
    await client.delete("v1", "Secret", f"bootstrap-token-{token_id}", namespace="kube-system")
    for _ in range(5):
        try:
            cm = await client.get("v1", "ConfigMap", NAME, namespace=NAMESPACE)
        except NotFoundError:
            return
        data = dict(cm.get("data") or {})
        if data.pop(JWS_PREFIX + token_id, None) is None:
            return
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


def _admin(data_dir: Path, kubeconfig: Path | None) -> Client:
    return Client.from_kubeconfig(kubeconfig or data_dir / "kubeconfig")


@token_app.command("list")
def list_(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The server's data dir.")] =
        Path(".kubevisor"),
    kubeconfig: Annotated[Path | None, typer.Option(help="Admin kubeconfig.")] = None,
) -> None:
    """List the bootstrap tokens (ids only; secrets are not shown)."""

    async def run() -> list[dict[str, str]]:
        async with _admin(data_dir, kubeconfig) as client:
            return await list_tokens(client)

    try:
        tokens = asyncio.run(run())
    except (ClientError, httpx.HTTPError, OSError) as exc:
        typer.echo(f"error: cannot list tokens: {exc}", err=True)
        raise typer.Exit(1) from exc
    rows = [("TOKEN ID", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS")]
    rows += [(t["id"], t["expires"], t["usages"], t["description"] or "<none>", t["groups"])
             for t in tokens]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@token_app.command("delete")
def delete(
    token_ids: Annotated[list[str], typer.Argument(help="Token ids (or whole tokens).")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The server's data dir.")] =
        Path(".kubevisor"),
    kubeconfig: Annotated[Path | None, typer.Option(help="Admin kubeconfig.")] = None,
) -> None:
    """Delete bootstrap tokens: they stop authenticating at once."""

    async def run() -> None:
        async with _admin(data_dir, kubeconfig) as client:
            for token_id in token_ids:
                await delete_token(client, token_id)
                typer.echo(f'bootstrap token "{token_id.partition(".")[0]}" deleted')

    try:
        asyncio.run(run())
    except (ClientError, httpx.HTTPError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
