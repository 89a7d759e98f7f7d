"""Context edge cases found by benchmarks/mutation.py (mutants of core/rng.py the other tests let through).

Kept apart from test_core_rng.py, which the RNG work owns: key and stream-name validation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from nnx_conformance.core import Context, NNXError
from nnx_conformance.core import rng as core_rng


def test_a_key_of_the_wrong_dtype_is_named_with_its_dtype():
    with pytest.raises(TypeError, match=r"got ndarray with dtype int32$|got ArrayImpl with dtype int32$"):
        Context(jnp.zeros(2, jnp.int32))
    with pytest.raises(TypeError, match=r"got object$"):
        Context(object())  # no dtype at all: nothing to name


def test_the_default_stream_is_not_an_entry_of_streams():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="counter is count"):
        Context(key, streams={core_rng.DEFAULT_STREAM: 0})
    assert Context(key, streams={"dropout": 3}).streams == {"dropout": 3}


def test_a_stream_name_must_fit_its_32_bit_length_word(monkeypatch):
    # A real 2**32-byte name is out of reach; the bound is the module's limit, so shrink it.
    monkeypatch.setattr(core_rng, "_COUNT_LIMIT", 4)
    ctx = Context(jax.random.key(0))
    ctx.make_rng("abc")
    with pytest.raises(NNXError, match="stream name of 4 bytes"):
        ctx.make_rng("abcd")
    with pytest.raises(NNXError, match="stream name of 5 bytes"):
        Context(jax.random.key(0), streams={"abcde": 0})
