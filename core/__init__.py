"""The reference core: a small, correct, fast NNX-style module system (Tiny NNX, fixed).

Everything public is re-exported here; ``docs/architecture.md`` (core section) is the contract. The
submodules, each small and documented: ``variable`` (the mutable cell), ``state`` (the flat immutable
view), ``graph`` (Module, ModuleDef, partition/merge/update), ``rng`` (Context), ``layers`` and ``errors``.
"""

from .errors import (
    NNXError,
    ShardingError,
    StateConflictError,
    StateMismatchError,
    UnhashableStaticError,
)
from .graph import Module, ModuleDef
from .layers import BatchNorm, Block, Dropout, Linear, ScanMLP
from .rng import Context
from .state import Filter, State
from .variable import Path, Sharding, Variable

__all__ = [
    "BatchNorm",
    "Block",
    "Context",
    "Dropout",
    "Filter",
    "Linear",
    "Module",
    "ModuleDef",
    "NNXError",
    "Path",
    "ScanMLP",
    "Sharding",
    "ShardingError",
    "State",
    "StateConflictError",
    "StateMismatchError",
    "UnhashableStaticError",
    "Variable",
]
