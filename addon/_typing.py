"""Types shared by the add-on's modules."""

from __future__ import annotations

from typing import Literal, TypeAlias

#: What an operator's ``execute``/``invoke`` returns.
OperatorResult: TypeAlias = set[
    Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]
]
