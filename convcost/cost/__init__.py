"""The cost model: one formula per op kind, in one place.

`core` holds `Cost` and the formula registry; each op family's formula lives in a module of its
own (`conv`, `matmul`), registered on import, so `cost_of` prices any op once this package is imported.
"""

from convcost.cost import conv, matmul  # noqa: F401  (each registers its formula)
from convcost.cost.conv import conv_weight_count
from convcost.cost.core import (
    DTYPE_BYTES,
    MACS_CONVENTION,
    Cost,
    bytes_per_element,
    cost_of,
    register_cost,
    total_cost,
)

__all__ = ["DTYPE_BYTES", "MACS_CONVENTION", "Cost", "bytes_per_element", "conv_weight_count", "cost_of",
           "register_cost", "total_cost"]
