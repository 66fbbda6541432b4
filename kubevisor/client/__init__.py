"""The async Kubernetes API client used by controllers, the node agent and
the CLI: :class:`Client` (CRUD, patch, resumable watch, discovery),
:class:`Informer` (a list+watch cache with event handlers),
:class:`SharedInformers` (one informer per watch for a whole process) and the error
tree of :mod:`kubevisor.client.errors`."""

from kubevisor.client.client import INITIAL_EVENTS_END, Client, ServerConnection, object_key
from kubevisor.client.discovery import APIResource, Discovery
from kubevisor.client.errors import (
    AlreadyExistsError,
    ApiError,
    BadRequestError,
    ClientError,
    ConflictError,
    ExpiredError,
    ForbiddenError,
    InvalidError,
    KubeconfigError,
    MethodNotAllowedError,
    NotFoundError,
    ServerError,
    TooManyRequestsError,
    TransportError,
    UnauthorizedError,
    UnknownResourceError,
    UnsupportedMediaTypeError,
)
from kubevisor.client.informer import Informer, metadata_only
from kubevisor.client.informers import SharedInformers, filtered, has_label
from kubevisor.client.kubeconfig import ConnectionConfig, load_kubeconfig

__all__ = [
    "INITIAL_EVENTS_END",
    "APIResource",
    "AlreadyExistsError",
    "ApiError",
    "BadRequestError",
    "Client",
    "ClientError",
    "ConflictError",
    "ConnectionConfig",
    "Discovery",
    "ExpiredError",
    "ForbiddenError",
    "Informer",
    "InvalidError",
    "KubeconfigError",
    "MethodNotAllowedError",
    "NotFoundError",
    "ServerConnection",
    "ServerError",
    "SharedInformers",
    "TooManyRequestsError",
    "TransportError",
    "UnauthorizedError",
    "UnknownResourceError",
    "UnsupportedMediaTypeError",
    "filtered",
    "has_label",
    "load_kubeconfig",
    "metadata_only",
    "object_key",
]
