"""The PyTorch Geometric peer of `jaxnets bench train`'s gcn-molhiv recipe: the course's graph
GCN on ogbg-molhiv as the course writes it (CS224W Colab 2), in eager PyTorch + PyG.

    python benchmarks/gcn_pyg.py --data-dir ../shared/data/ogb [--limit-train 4000]

AtomEncoder (a sum of one embedding per atom feature) - 5 GCNConv layers of 256 with batch norm,
relu and dropout 0.5 between them - global mean pool - Linear(256, 1); BCE with logits on the
labelled tasks, Adam 1e-3, batches of 32 shuffled graphs from PyG's DataLoader. The graphs are
the ones jaxnets reads (`jaxnets.data.graphs.load_graph_dataset`), so both train on the same
arrays; the encoder's table sizes are jaxnets' `atom_feature_dims`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GCNConv, global_mean_pool


class AtomEncoder(nn.Module):
    def __init__(self, feature_dims: Sequence[int], hidden: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(d, hidden) for d in feature_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(embed(x[:, i]) for i, embed in enumerate(self.embeddings))


class GCNGraph(nn.Module):
    def __init__(self, feature_dims: Sequence[int], hidden: int, out: int, layers: int, p: float):
        super().__init__()
        self.encoder = AtomEncoder(feature_dims, hidden)
        self.convs = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(layers))
        self.bns = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers - 1))
        self.dropout = p
        self.linear = nn.Linear(hidden, out)

    def forward(self, batch: Data) -> torch.Tensor:
        x = self.encoder(batch.x)
        for conv, bn in zip(self.convs[:-1], self.bns, strict=True):
            x = nn.functional.relu(bn(conv(x, batch.edge_index)))
            x = nn.functional.dropout(x, self.dropout, self.training)
        x = self.convs[-1](x, batch.edge_index)
        return self.linear(global_mean_pool(x, batch.batch))


def to_pyg(dataset, indices: np.ndarray) -> list[Data]:
    """jaxnets' GraphDataset graphs (graph-local edge indices) as PyG Data objects."""
    node_start = np.concatenate([[0], np.cumsum(dataset.n_node)])
    edge_start = np.concatenate([[0], np.cumsum(dataset.n_edge)])
    graphs = []
    for i in indices:
        edges = slice(edge_start[i], edge_start[i + 1])
        graphs.append(
            Data(
                x=torch.from_numpy(
                    dataset.nodes[node_start[i] : node_start[i + 1]].astype(np.int64)
                ),
                edge_index=torch.from_numpy(
                    np.stack([dataset.senders[edges], dataset.receivers[edges]]).astype(np.int64)
                ),
                y=torch.from_numpy(dataset.labels[i : i + 1]),
            )
        )
    return graphs


class Runner:
    """The recipe on `graphs`, ready to time (as train_torch.Runner)."""

    def __init__(
        self,
        graphs: list[Data],
        feature_dims: Sequence[int],
        *,
        num_tasks: int = 1,
        hidden: int = 256,
        num_layers: int = 5,
        dropout: float = 0.5,
        batch_size: int = 32,
        seed: int = 0,
    ):
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.graphs, self.batch_size = graphs, batch_size
        self.steps_per_epoch = -(-len(graphs) // batch_size)
        self.model = GCNGraph(feature_dims, hidden, num_tasks, num_layers, dropout)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.model.train()
        self.threads = torch.get_num_threads()

    def _step(self, batch: Data) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(batch)
        labelled = batch.y == batch.y  # NaN marks a missing label
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits[labelled], batch.y[labelled].float()
        )
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def epoch(self, epoch: int) -> float:
        torch.set_num_threads(self.threads)
        start = time.perf_counter()
        loader = DataLoader(
            self.graphs, batch_size=self.batch_size, shuffle=True, generator=self.generator
        )
        for batch in loader:
            self._step(batch)
        return time.perf_counter() - start

    def steps(self, k: int) -> float:
        torch.set_num_threads(self.threads)
        batch = next(iter(DataLoader(self.graphs[: self.batch_size], batch_size=self.batch_size)))
        start = time.perf_counter()
        for _ in range(k):
            self._step(batch)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    from jaxnets.data.graphs import atom_feature_dims, load_graph_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the folder holding ogbg_molhiv/")
    parser.add_argument("--limit-train", type=int, help="train on the first N training graphs")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    dataset = load_graph_dataset("ogbg-molhiv", args.data_dir)
    train = dataset.splits["train"][: args.limit_train]
    runner = Runner(to_pyg(dataset, train), atom_feature_dims(dataset))
    for epoch in range(1, args.epochs + 1):
        print(f"epoch {epoch}: {runner.epoch(epoch):.2f} s ({len(train):,} graphs)")


if __name__ == "__main__":
    main()
