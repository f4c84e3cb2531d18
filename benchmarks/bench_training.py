"""Time P1's paper-profile training run: ResNet-18 (torchvision, 1 channel) on a 224 px binary task.

    python benchmarks/bench_training.py [--device cuda] [--epochs 3] [--n 1750]

Trains on MNIST 3 vs 5 upsampled to 224 px in [0, 255] (P1's preprocessing), with P1's optimiser (Adam,
lr 1e-3, weight decay 1e-4) and the paper profile's batch size (p1_fig2 in profiles.d/p1.yaml), for a few epochs;
reports seconds per epoch and the projected time of the full 100-epoch run. Writes
benchmarks/results/training_<device>.json atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import torch

from domaingap import data, models, profiles, training

OUT = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=3, help="epochs timed (the paper runs 100)")
    ap.add_argument("--n", type=int, default=1750, help="training images (P1's largest N)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--model", default="resnet18")
    args = ap.parse_args()

    cfg = profiles.get("p1_fig2", "paper")
    mcfg = dict(cfg["models"][args.model])
    lr, batch = mcfg.pop("lr"), mcfg.pop("batch_size")
    s = data.load("mnist", classes=(3, 5), n=args.n, balanced=True, seed=0, size=args.size, pixel_range=(0, 255))
    x, y = s.x.to(args.device), s.y.to(args.device)
    net = models.build_model(args.model, in_channels=1, num_classes=2, image_size=args.size, **mcfg).to(args.device)
    hist = training.fit(net, x, y, epochs=args.epochs, batch_size=batch, lr=lr, weight_decay=cfg["weight_decay"],
                        seed=0, progress=False, device=args.device)
    epoch_s = hist["time_s"]
    steady = sum(epoch_s[1:]) / max(1, len(epoch_s) - 1) if len(epoch_s) > 1 else epoch_s[0]
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    record = {
        "meta": {"benchmark": "training (P1 paper profile)", "device": args.device, "device_name": device_name,
                 "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                 "date_utc": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                 "load_average_1_5_15": list(os.getloadavg()),
                 "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
        "cases": [{"case": f"{args.model} {args.size}px N={args.n} batch={batch}", "epochs_timed": args.epochs,
                   "first_epoch_s": epoch_s[0], "steady_epoch_s": steady,
                   "images_per_s": args.n / steady, "projected_100_epochs_min": 100 * steady / 60,
                   "final_train_loss": hist["train_loss"][-1],
                   "cuda_peak_mib": (torch.cuda.max_memory_allocated() / 2**20)
                   if args.device.startswith("cuda") else None}],
    }
    tag = args.device if args.device == "cpu" else "cuda-" + device_name.lower().replace(" ", "-")
    OUT.mkdir(exist_ok=True)
    out = OUT / f"training_{tag}.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out)
    print(json.dumps(record["cases"][0], indent=1))


if __name__ == "__main__":
    main()
