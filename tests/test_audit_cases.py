"""Every case of the gradient audit (`jaxnets gradcheck`) under pytest, so a regression in any
layer's or network's backward turns CI red (the CLI test filters to one case).

Each case compares the hand-derived backward with jax.grad of the forward, with central
differences, and through its custom_vjp, in float64 (tolerances in jaxnets.gradcheck.core).
Cases that took 2 s or more on this 2-core machine (measured 2026-12-06, one core each, the
longest the tiny transformer at 52 s) run in the slow tier, which CI also runs.
"""

from __future__ import annotations

import pytest

from jaxnets.gradcheck.audit import all_cases

SLOW = {
    "affine",
    "cross_entropy",
    "conv2d (stride 2, pad 1)",
    "conv2d (3x2 kernel, stride (2,3), unread rows)",
    "conv2d lax kernel (stride 2, padding 1)",
    "conv2d matmul kernel (plain im2col, stride 2, padding 1)",
    "conv2d matmul kernel (3x2, stride (2,3), 2-column tiles, last row/columns never read)",
    "conv2d mixed kernel (lax forward and dx, matmul dw; stride 2, padding 1)",
    "max_pool (3x3, stride 2, pad 1)",
    "avg_pool_naive (3x3, stride 2, pad 1)",
    "positional_encoding",
    "masked_batchnorm (eval)",
    "softmax",
    "batchnorm (train)",
    "spatial_batchnorm (train)",
    "layernorm (N, D)",
    "layernorm (B, T, E)",
    "groupnorm",
    "dropout",
    "conv2d (stride 1, same)",
    "conv2d matmul kernel (5x5 same, 4-column tiles past the edge)",
    "conv2d_naive (stride 2, pad 1)",
    "conv2d_naive (3x2 kernel, stride (2,3), unread rows)",
    "conv2d_relu_pool (3x3 same, 2x2 pool, odd sizes)",
    "max_pool_naive (2x2)",
    "max_pool_naive (3x3, stride 2, pad 1)",
    "scaled_dot_product",
    "scaled_dot_product (causal + padding, dropout)",
    "multi_head_attention (mask, dropout)",
    "feed_forward (Linear-GELU-Linear)",
    "encoder_block post-LN (mask, dropout)",
    "encoder_block pre-LN (mask, dropout)",
    "tiny transformer classifier",
    "gcn",
    "sparse_gcn",
    "masked_batchnorm (train)",
    "two-layer net",
    "three-layer conv net",
}
CASES = all_cases()
PARAMS = [
    pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.name in SLOW else [])
    for case in CASES
]


def test_every_slow_name_is_a_case():
    assert SLOW <= {case.name for case in CASES}  # a renamed case must not drop out silently


@pytest.mark.parametrize("case", PARAMS)
def test_audit_case_passes(case, x64):
    result = case.run(0)
    assert result.passed, str(result)
