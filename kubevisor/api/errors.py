"""The exceptions of the api layer (kinds, schemas, paths, quantities).

::

    ApiDataError                        base of everything kubevisor.api raises
    ├── SchemaError (LookupError)        a schema name the upstream definitions lack
    ├── JSONPathError (ValueError)       a JSONPath expression that does not parse
    └── QuantityError (ValueError)       a value that is not a resource quantity

Invalid *objects* are not exceptions here: validation returns
``fielderrors.FieldError`` values, which the apiserver turns into a 422
Status. Label/field selector syntax errors are ``selectors.SelectorError``.
"""

from __future__ import annotations


class ApiDataError(Exception):
    """Base of the api layer's exceptions."""


class SchemaError(ApiDataError, LookupError):
    """A schema name that the upstream definitions do not hold."""


class JSONPathError(ApiDataError, ValueError):
    """A JSONPath expression that cannot be parsed."""


class QuantityError(ApiDataError, ValueError):
    """Not a resource quantity."""
