"""Speed benchmarks: `jaxnets bench cnn` (see jaxnets/bench/cnn.py and benchmarks/README.md)."""
