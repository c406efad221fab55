"""Worked jnp.einsum examples (course B): each subscript letter names an axis.

Rules used below: a letter repeated across inputs is multiplied along; a letter absent from the
output (after `->`) is summed over; with no `->` the output keeps the letters that occur once,
in alphabetical order; a letter repeated within one input takes the diagonal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def trace(a: Array) -> Array:
    """'ii': both axes share i, so take the diagonal; no output letters, so sum it: sum_i a[i,i]."""
    return jnp.einsum("ii", a)


def diagonal(a: Array) -> Array:
    """'ii->i': the diagonal as a vector, kept rather than summed because i is in the output."""
    return jnp.einsum("ii->i", a)


def matmul(a: Array, b: Array) -> Array:
    """'ij,jk->ik': out[i,k] = sum_j a[i,j] * b[j,k]; j is shared and dropped, so summed."""
    return jnp.einsum("ij,jk->ik", a, b)


def batched_matmul(a: Array, b: Array) -> Array:
    """'ijk,ikl->ijl': a matmul per batch index i, which is kept (not summed) in the output."""
    return jnp.einsum("ijk,ikl->ijl", a, b)


def inner(u: Array, v: Array) -> Array:
    """'i,i': out = sum_i u[i] * v[i], the dot product of two vectors."""
    return jnp.einsum("i,i", u, v)


def outer(u: Array, v: Array) -> Array:
    """'i,j->ij': out[i,j] = u[i] * v[j]; no letter shared, so nothing is summed."""
    return jnp.einsum("i,j->ij", u, v)


def transpose(a: Array) -> Array:
    """'ij->ji': only the output order changes."""
    return jnp.einsum("ij->ji", a)


def row_sums(a: Array) -> Array:
    """'ij->i': j is dropped from the output, so it is summed over."""
    return jnp.einsum("ij->i", a)
