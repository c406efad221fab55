"""The two-layer net on Iris, trained on its hand-derived gradients."""
