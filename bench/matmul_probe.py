#!/usr/bin/python3
"""One core's matrix-product speed in fp32 and bf16 for a layer's shape, in
Debian's PyTorch, with the OpenBLAS core it runs: what decides whether bf16
pays on a host (docs/performance.md, "bf16 on the CPU").

    /usr/bin/python3 bench/matmul_probe.py [--rows 1536] [--width 256] [--threads 1]
    /usr/bin/python3 bench/matmul_probe.py --bmm 128,48,64   # the attention's batched products
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from pytorch_reference import blas_core  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1536, help="batch x sequence (32 x 48)")
    ap.add_argument("--width", type=int, default=256, help="the layer's width")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bmm", help="BATCH,SEQ,HEAD_SIZE: time torch.bmm of [B,S,D] by [B,D,S] (batch x heads "
                                  "of a layer's attention scores) instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.bmm:
        b, s, d = (int(x) for x in args.bmm.split(","))
        x, y = torch.randn(b, s, d), torch.randn(b, d, s)
        torch.bmm(x, y)
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(20):
                torch.bmm(x, y)
            best = min(best, (time.perf_counter() - t) / 20)
        print(f"OpenBLAS core {blas_core()}, {args.threads} thread(s): bmm [{b},{s},{d}] by [{b},{d},{s}] "
              f"{1e3 * best:.2f} ms, {2 * b * s * s * d / best / 1e9:.1f} GFLOP/s")
        return
    a, b = torch.randn(args.rows, args.width), torch.randn(args.width, args.width)
    flops = 2 * args.rows * args.width * args.width
    print(f"OpenBLAS core {blas_core()}, {args.threads} thread(s), {args.rows}x{args.width} by "
          f"{args.width}x{args.width}")
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        x @ y
        one = time.perf_counter()
        x @ y
        one = time.perf_counter() - one
        calls = max(1, min(50, int(0.05 / max(one, 1e-6))))
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(calls):
                x @ y
            best = min(best, (time.perf_counter() - t) / calls)
        print(f"{str(dtype).removeprefix('torch.'):9s} {flops / best / 1e9:8.1f} GFLOP/s")


if __name__ == "__main__":
    main()
