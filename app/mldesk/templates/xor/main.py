"""Learn XOR with a tiny two-layer network, in plain Python (no packages needed).

Prints progress lines that mldesk charts as metrics (``epoch 100/2000 loss: 0.6931``),
saves outputs/weights.json and outputs/loss.csv at the end, and on SIGTERM (Stop in
mldesk) saves outputs/checkpoint.json and exits with status 143.
"""

import argparse
import json
import math
import os
import random
import signal
import sys

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=2000)
parser.add_argument("--hidden", type=int, default=8)
parser.add_argument("--lr", type=float, default=1.0)
args = parser.parse_args()

stop = []
signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
os.makedirs("outputs", exist_ok=True)

data = [((0.0, 0.0), 0.0), ((0.0, 1.0), 1.0), ((1.0, 0.0), 1.0), ((1.0, 1.0), 0.0)]
rng = random.Random(0)
n = args.hidden
w1 = [[rng.gauss(0, 1) for _ in range(n)] for _ in range(2)]
b1 = [0.0] * n
w2 = [rng.gauss(0, 1) for _ in range(n)]
b2 = 0.0


def sigmoid(z):
    return 1 / (1 + math.exp(-z)) if z > -60 else 0.0


def forward(x):
    h = [math.tanh(x[0] * w1[0][j] + x[1] * w1[1][j] + b1[j]) for j in range(n)]
    return h, sigmoid(sum(h[j] * w2[j] for j in range(n)) + b2)


def weights():
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


losses = []
every = max(1, args.epochs // 20)
print(f"training XOR for {args.epochs} epochs", flush=True)

for epoch in range(1, args.epochs + 1):
    if stop:
        with open("outputs/checkpoint.json", "w") as f:
            json.dump(dict(weights(), epoch=epoch - 1), f)
        print(f"stopped at epoch {epoch - 1}; saved outputs/checkpoint.json", flush=True)
        sys.exit(128 + signal.SIGTERM)
    loss = 0.0
    g_w1 = [[0.0] * n for _ in range(2)]
    g_b1, g_w2, g_b2 = [0.0] * n, [0.0] * n, 0.0
    for x, y in data:
        h, p = forward(x)
        loss -= (y * math.log(p + 1e-12) + (1 - y) * math.log(1 - p + 1e-12)) / len(data)
        g_out = (p - y) / len(data)  # d loss / d logit for sigmoid + cross-entropy
        g_b2 += g_out
        for j in range(n):
            g_w2[j] += h[j] * g_out
            g_h = g_out * w2[j] * (1 - h[j] ** 2)
            g_b1[j] += g_h
            g_w1[0][j] += x[0] * g_h
            g_w1[1][j] += x[1] * g_h
    b2 -= args.lr * g_b2
    for j in range(n):
        w2[j] -= args.lr * g_w2[j]
        b1[j] -= args.lr * g_b1[j]
        w1[0][j] -= args.lr * g_w1[0][j]
        w1[1][j] -= args.lr * g_w1[1][j]
    losses.append(loss)
    if epoch % every == 0:
        print(f"epoch {epoch}/{args.epochs} loss: {loss:.4f}", flush=True)

with open("outputs/weights.json", "w") as f:
    json.dump(weights(), f)
with open("outputs/loss.csv", "w") as f:
    f.write("epoch,loss\n")
    f.writelines(f"{i},{value:.6f}\n" for i, value in enumerate(losses, 1))
accuracy = sum((forward(x)[1] > 0.5) == (y > 0.5) for x, y in data) / len(data)
print(f"accuracy: {accuracy:.2f}", flush=True)
