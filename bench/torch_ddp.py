#!/usr/bin/python3
"""torch_ddp.py: PyTorch DistributedDataParallel (gloo, CPU) timings of the
network `cilscale scale` picks, for `mpirun -np N cilscale bench`.

    /usr/bin/python3 bench/torch_ddp.py --ranks 2 --arch resnet18 --budget 1M --classes 10 \\
        --stem small --input 1x28x28 --batch 64 --steps 10 --warmup 3 [--threads 1] \\
        [--memory-format channels_last] [--sync-bn]

The network is torch_reference.py's (same module names, the parameter count
checked against cilscale's). Each of the --ranks processes (torch.multiprocessing,
gloo on 127.0.0.1) holds the same model (seed 0), its share of one random
global batch of --batch images (the same rows as cilscale's ranks), and times
training steps: zero_grad, forward, cross-entropy, backward (DDP's bucketed
allreduce, overlapped), SGD step (momentum 0.9, weight decay 5e-4). Prints
one JSON object: the median step time and the whole batch's images/s.
--sync-bn converts batch norm to nn.SyncBatchNorm (which this torch may not
run on CPU: then it says so and exits 1).
"""
import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402


def worker(rank, a, cfg, port, q):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    try:
        torch.manual_seed(a.seed)
        nets, _ = ref.define_networks(torch)
        model = ref.build_network(nets, cfg, a.in_shape[0], a.stem, a.head)
        params = sum(p.numel() for p in model.parameters())
        if params != cfg["params"]:
            raise SystemExit(f"parameter count {params} != cilscale's {cfg['params']}")
        if a.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        fmt = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
        model.to(memory_format=fmt)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        g = torch.Generator().manual_seed(1)
        x = torch.randn((a.batch,) + a.in_shape, generator=g)
        y = torch.randint(0, a.classes, (a.batch,), generator=g)
        q_, e_ = divmod(a.batch, a.ranks)
        lo = rank * q_ + min(rank, e_)
        hi = lo + q_ + (rank < e_)
        x, y = x[lo:hi].contiguous(memory_format=fmt), y[lo:hi]
        opt = torch.optim.SGD(ddp.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
        ddp.train()
        times = []
        for i in range(a.warmup + a.steps):
            dist.barrier()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(ddp(x), y)
            loss.backward()
            opt.step()
            float(loss)
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
        if rank == 0:
            q.put({"ok": True, "step_ms": 1e3 * statistics.median(times), "params": params})
    except Exception as e:  # noqa: BLE001 (reported by rank 0's parent)
        q.put({"ok": False, "error": f"rank {rank}: {type(e).__name__}: {e}"})
    finally:
        dist.destroy_process_group()


def main(argv):
    ranks = 2
    if "--ranks" in argv:
        i = argv.index("--ranks")
        ranks = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    sync_bn = "--sync-bn" in argv
    argv = [v for v in argv if v != "--sync-bn"]
    a = ref.parse_args(argv)
    a.ranks, a.sync_bn = ranks, sync_bn
    if a.threads is None:
        a.threads = max(1, (os.cpu_count() or 1) // ranks)
    cfg, _ = ref.cilscale_scale(a)
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    procs = [ctx.Process(target=worker, args=(r, a, cfg, port, q)) for r in range(ranks)]
    for p in procs:
        p.start()
    res = q.get()
    for p in procs:
        p.join()
    if not res["ok"]:
        ref.die("torch_ddp: " + res["error"])
    out = {"framework": "pytorch-ddp-gloo", "arch": a.arch, "ranks": ranks, "threads_per_rank": a.threads,
           "batch": a.batch, "input": "x".join(map(str, a.in_shape)), "memory_format": a.memory_format,
           "sync_bn": sync_bn, "params": res["params"], "step_ms": round(res["step_ms"], 2),
           "train_img_per_s": round(a.batch / (res["step_ms"] / 1e3), 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
