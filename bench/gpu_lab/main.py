import subprocess, sys
print("visible GPUs:", subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip())
try:
    import torch
    print("torch cuda:", torch.cuda.is_available())
except ImportError:
    print("no torch here")
