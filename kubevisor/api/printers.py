"""Table columns for the built-in kinds, as ``kubectl get`` shows them.

Called by ``api.builtin`` when declaring kinds; the apiserver renders the
Table. Contract of :class:`PrinterColumn.func`: a pure function of the
object returning the cell value (str, int, float, bool or None for
``<none>``-like empty cells); the apiserver itself adds the NAME column
first and computes AGE cells (a column named ``Age`` with type ``date``
and no func: the apiserver renders metadata.creationTimestamp as age).
"""

from __future__ import annotations

from kubevisor.api.kinds import PrinterColumn

NAME = PrinterColumn(name="Name", type="string", format="name",
                     description="Name must be unique within a namespace.")
AGE = PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp",
                    description="CreationTimestamp is a timestamp representing the server time "
                    "when this object was created.")


def default_columns() -> tuple[PrinterColumn, ...]:
    """NAME and AGE, for kinds that declare no columns of their own."""
    return (NAME, AGE)


def columns_for(group: str, kind: str) -> tuple[PrinterColumn, ...]:
    """The columns of a built-in kind after NAME (empty: use default_columns())."""
    return ()
