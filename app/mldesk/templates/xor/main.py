"""Learn XOR with a two-layer NumPy network.

Prints progress, saves outputs/weights.npz and outputs/loss.csv at the end, and on
SIGTERM (Stop in mldesk) saves outputs/checkpoint.npz and exits with status 143.
"""

import argparse
import os
import signal
import sys

import numpy as np

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=2000)
parser.add_argument("--hidden", type=int, default=8)
parser.add_argument("--lr", type=float, default=1.0)
args = parser.parse_args()

stop = []
signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
os.makedirs("outputs", exist_ok=True)

x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
y = np.array([[0], [1], [1], [0]], dtype=float)
rng = np.random.default_rng(0)
w1, b1 = rng.normal(0, 1, (2, args.hidden)), np.zeros(args.hidden)
w2, b2 = rng.normal(0, 1, (args.hidden, 1)), np.zeros(1)
losses = []
every = max(1, args.epochs // 20)
print(f"training XOR for {args.epochs} epochs", flush=True)

for epoch in range(1, args.epochs + 1):
    if stop:
        np.savez("outputs/checkpoint.npz", w1=w1, b1=b1, w2=w2, b2=b2, epoch=epoch - 1)
        print(f"stopped at epoch {epoch - 1}; saved outputs/checkpoint.npz", flush=True)
        sys.exit(128 + signal.SIGTERM)
    h = np.tanh(x @ w1 + b1)
    p = 1 / (1 + np.exp(-(h @ w2 + b2)))
    loss = float(-np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)))
    losses.append(loss)
    grad_out = (p - y) / len(x)  # d loss / d logits for sigmoid + cross-entropy
    grad_h = (grad_out @ w2.T) * (1 - h**2)
    w2 -= args.lr * h.T @ grad_out
    b2 -= args.lr * grad_out.sum(0)
    w1 -= args.lr * x.T @ grad_h
    b1 -= args.lr * grad_h.sum(0)
    if epoch % every == 0:
        print(f"epoch {epoch}/{args.epochs} loss {loss:.4f}", flush=True)

np.savez("outputs/weights.npz", w1=w1, b1=b1, w2=w2, b2=b2)
with open("outputs/loss.csv", "w") as f:
    f.write("epoch,loss\n")
    f.writelines(f"{i},{value:.6f}\n" for i, value in enumerate(losses, 1))
prediction = 1 / (1 + np.exp(-(np.tanh(x @ w1 + b1) @ w2 + b2))) > 0.5
print(f"accuracy {float(np.mean(prediction == y)):.2f}", flush=True)
