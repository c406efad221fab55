"""GCNs on Cora, ENZYMES and OGB datasets, trained with jraph graphs and Flax NNX."""
