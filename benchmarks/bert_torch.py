"""The PyTorch peer of `jaxnets bench train`'s bert-mlm recipe: BERT masked-language-model
pretraining as a student would write it in eager PyTorch, at the sizes of jaxnets' CPU preset.

    python benchmarks/bert_torch.py [--steps 20]        # standalone: seconds per step

The model is `jaxnets.models.bert.BertModel`'s: token embedding + sinusoidal positions -
dropout 0.1 - post-LN `nn.TransformerEncoderLayer`s (exact GELU) - a Linear(E, vocab) head run
only at the (up to `max_predictions`) selected positions of each row. Masking is BERT's, redone
for every batch: 15% of the non-special tokens, of which 80% become [MASK], 10% a random token
and 10% stay. AdamW (decay on matrices only), global-norm clipping at 1.0, warmup then cosine.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch import nn


def sinusoidal(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rates = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * rates), torch.cos(position * rates)
    return table


class BertMLM(nn.Module):
    def __init__(self, vocab: int, embed: int, heads: int, ff: int, layers: int, max_len: int):
        super().__init__()
        self.token_embed = nn.Embedding(vocab, embed)
        self.register_buffer("positions", sinusoidal(max_len, embed))
        self.dropout = nn.Dropout(0.1)
        block = nn.TransformerEncoderLayer(
            embed, heads, ff, 0.1, activation="gelu", batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.mlm_head = nn.Linear(embed, vocab)

    def forward(self, ids: torch.Tensor, padding: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """MLM logits (B, P, vocab) at positions `at` (B, P); `padding` (B, T) True at pads."""
        x = self.dropout(self.token_embed(ids) + self.positions[: ids.shape[1]])
        hidden = self.encoder(x, src_key_padding_mask=padding)
        hidden = hidden.gather(1, at[..., None].expand(-1, -1, hidden.shape[-1]))
        return self.mlm_head(hidden)


class Runner:
    """The recipe on `sequences` (N, T) of token ids, ready to time (as train_torch.Runner)."""

    def __init__(
        self,
        sequences: np.ndarray,
        *,
        vocab_size: int,
        special_ids: tuple[int, ...],
        mask_id: int,
        first_regular_id: int,
        embed_dim: int = 128,
        num_heads: int = 4,
        ff_dim: int = 256,
        num_layers: int = 2,
        batch_size: int = 32,
        steps_per_epoch: int = 50,
        total_steps: int = 400,
        warmup_steps: int = 40,
        learning_rate: float = 1e-3,
        max_predictions: int = 32,
        seed: int = 0,
    ):
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.sequences = torch.from_numpy(sequences.astype(np.int64))
        self.special = torch.tensor(special_ids)
        self.vocab_size, self.mask_id, self.first_regular = vocab_size, mask_id, first_regular_id
        self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
        self.max_predictions = max_predictions
        self.model = BertMLM(
            vocab_size, embed_dim, num_heads, ff_dim, num_layers, sequences.shape[1]
        )
        params = list(self.model.parameters())
        self.optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in params if p.ndim > 1], "weight_decay": 0.01},
                {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
            ],
            lr=learning_rate,
        )

        def warmup_cosine(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            done = min(step - warmup_steps, total_steps - warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * done / (total_steps - warmup_steps)))

        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine)
        self.model.train()
        self.threads = torch.get_num_threads()

    def _masked(self, ids: torch.Tensor):
        """(inputs, padding, positions, labels): BERT's 80/10/10 corruption of 15% of tokens."""
        g = self.generator
        candidates = ~torch.isin(ids, self.special) & (ids != 0)
        selected = (torch.rand(ids.shape, generator=g) < 0.15) & candidates
        roll = torch.rand(ids.shape, generator=g)
        random_ids = torch.randint(self.first_regular, self.vocab_size, ids.shape, generator=g)
        inputs = torch.where(selected & (roll < 0.8), self.mask_id, ids)
        inputs = torch.where(selected & (roll >= 0.8) & (roll < 0.9), random_ids, inputs)
        # The selected positions first (stable), the head runs at the first max_predictions.
        at = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)
        at = at[:, : self.max_predictions]
        labels = torch.where(selected.gather(1, at), ids.gather(1, at), -100)
        return inputs, ids == 0, at, labels

    def _step(self, ids: torch.Tensor) -> float:
        inputs, padding, at, labels = self._masked(ids)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(inputs, padding, at)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        return loss.item()

    def epoch(self, epoch: int) -> float:
        torch.set_num_threads(self.threads)
        start = time.perf_counter()
        order = torch.randperm(len(self.sequences), generator=self.generator)
        for b in range(self.steps_per_epoch):
            start_row = (b * self.batch_size) % (len(order) - self.batch_size + 1)
            self._step(self.sequences[order[start_row : start_row + self.batch_size]])
        return time.perf_counter() - start

    def steps(self, k: int) -> float:
        torch.set_num_threads(self.threads)
        ids = self.sequences[: self.batch_size]
        start = time.perf_counter()
        for _ in range(k):
            self._step(ids)
        return time.perf_counter() - start


def random_sequences(n: int, length: int, vocab_size: int, seed: int = 0) -> np.ndarray:
    """[CLS] tokens... [SEP] rows of random regular ids (2 = [CLS], 3 = [SEP], 5.. regular):
    the step's time does not depend on which tokens the rows hold."""
    rows = np.random.default_rng(seed).integers(5, vocab_size, (n, length), dtype=np.int32)
    rows[:, 0], rows[:, -1] = 2, 3
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    runner = Runner(
        random_sequences(512, 128, 8192),
        vocab_size=8192,
        special_ids=(2, 3),
        mask_id=4,
        first_regular_id=5,
    )
    runner.steps(2)
    print(f"{runner.steps(args.steps) / args.steps * 1e3:.0f} ms per step")


if __name__ == "__main__":
    main()
