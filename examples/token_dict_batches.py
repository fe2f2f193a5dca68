"""Dict batches of integer tokens: a toy sequence task, many seeds of a token model.

Shows that the data handed to ``negres.train`` can be any pytree of arrays sharing their
leading axis: here ``{"tokens": int32 (N, L), "label": int32 (N,)}``. negres draws each
seed's batches from it; ``linen_program(..., inputs="tokens")`` calls the model on
``batch["tokens"]`` and the loss reads ``batch["label"]``.

The task: every sequence holds token 3 and token 7, each 1 to 3 times, among random
filler tokens; the label is whether the first 3 comes before the first 7. A bag of tokens
(embeddings mean-pooled) can only guess from the counts; the model here keeps positions:
it embeds each token and reads the concatenated embeddings with an MLP.

    PYTHONPATH=. python examples/token_dict_batches.py [--steps 400] [--seeds 8]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import flax.linen as nn
import numpy as np
import optax

import negres

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _common.py however run
from _common import arguments, curve_spacing, print_summary

VOCAB, LENGTH = 10, 16


def make_data(num: int, seed: int) -> dict[str, np.ndarray]:
    """``{"tokens": (num, LENGTH) int32, "label": (num,) int32}``: does the first 3 come
    before the first 7? Each appears 1 to 3 times among filler tokens."""
    rng = np.random.default_rng(seed)
    filler = np.array([t for t in range(VOCAB) if t not in (3, 7)])
    tokens = rng.choice(filler, size=(num, LENGTH)).astype(np.int32)
    slots = np.argsort(rng.random((num, LENGTH)), axis=1)  # distinct random positions
    count3, count7 = rng.integers(1, 4, size=(2, num))
    for j in range(3):
        rows = np.flatnonzero(j < count3)
        tokens[rows, slots[rows, j]] = 3
        rows = np.flatnonzero(j < count7)
        tokens[rows, slots[rows, 3 + j]] = 7
    first3, first7 = np.argmax(tokens == 3, axis=1), np.argmax(tokens == 7, axis=1)
    return {"tokens": tokens, "label": (first3 < first7).astype(np.int32)}


class TokenMLP(nn.Module):
    @nn.compact
    def __call__(self, tokens):                                    # (B, LENGTH) int32
        h = nn.Embed(VOCAB, 16)(tokens)                             # (B, LENGTH, 16)
        h = nn.relu(nn.Dense(64)(h.reshape(tokens.shape[0], -1)))   # positions kept
        return nn.Dense(2)(h)


def loss(logits, batch):
    labels = batch["label"]
    value = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return value, {"accuracy": (logits.argmax(-1) == labels).mean()}


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__, steps=400)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-test", type=int, default=400)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    train_data, test_data = make_data(args.num_train, seed=0), make_data(args.num_test, seed=1)

    program = negres.linen_program(TokenMLP(), loss, optax.adam(3e-3), inputs="tokens")
    result = negres.train(program, train_data, steps=args.steps, batch_size=args.batch_size,
                          num_seeds=args.seeds, eval_data=test_data,
                          eval_every=curve_spacing(args.steps, 8))
    accuracy = result.final("eval_accuracy")  # (S,)

    print(f"data: {', '.join(f'{k} {v.dtype} {v.shape}' for k, v in train_data.items())}; "
          f"share of label 1: {train_data['label'].mean():.2f}")
    print(f"{args.seeds} seeds x {args.steps} steps in one call: {result.train_time_s:.1f} s")
    print("test accuracy per seed at steps " + " ".join(map(str, result.curve_steps)) + ":")
    for s, curve in enumerate(result.curves["eval_accuracy"]):
        print(f"  seed {s}: " + " ".join(f"{a:.3f}" for a in curve))
    print_summary(negres.statistics.describe(accuracy, seed=0), "final test accuracy")
    print(f"total {time.perf_counter() - start:.1f} s")
    return {"result": result, "accuracy": accuracy, "program": program,
            "train_data": train_data, "test_data": test_data}


if __name__ == "__main__":
    main()
