"""Keeps its GPU busy for SECONDS (default 20): PyTorch or CuPy matrix products, else
only prints what it sees. Used by bench/gpu_check.sh."""
import os
import sys
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
print("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", "-"),
      "CUDA_DEVICE_ORDER=" + os.environ.get("CUDA_DEVICE_ORDER", "-"), flush=True)
step = None
try:
    import torch

    if torch.cuda.is_available():
        a = torch.randn(4096, 4096, device="cuda")
        print("torch sees", torch.cuda.device_count(), "GPU(s):", torch.cuda.get_device_name(0), flush=True)

        def step():
            (a @ a).sum().item()
except ImportError:
    pass
if step is None:
    try:
        import cupy

        a = cupy.random.random((4096, 4096), dtype=cupy.float32)
        print("cupy sees", cupy.cuda.runtime.getDeviceCount(), "GPU(s)", flush=True)

        def step():
            float((a @ a).sum())
    except Exception as exc:  # noqa: BLE001 - no GPU library: just wait
        print("no PyTorch/CuPy with CUDA here:", exc, flush=True)
t0 = time.monotonic()
n = 0
while time.monotonic() - t0 < seconds:
    if step is None:
        time.sleep(0.5)
    else:
        step()
        n += 1
print("steps", n, flush=True)
