"""jaxnets: neural-network coursework in JAX, with hand-derived backprop you can audit."""

__version__ = "0.1.0"
