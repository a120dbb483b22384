#!/usr/bin/env python3
"""Wall time per training step of `supervised`, `weighted_sum` and `bljust` joint steps, side by
side in one run, on identical batches and the same model, through the real BilevelTrainer.

Usage:
  tools/venv/bin/python bench/step_cost.py                       # conf/mini/bljust.yaml model
  tools/venv/bin/python bench/step_cost.py --config conf/tiny/bljust.yaml --steps 20 --batch 4
  tools/venv/bin/python bench/step_cost.py --threads 2 --seconds 2.5 --batch 16 --repeats 3

Prints one line per system (median / mean ms per step over the timed steps) and the ratios
bljust/weighted_sum (target <= 1.10) and weighted_sum/supervised.  Systems are interleaved over
``--repeats`` rounds so machine-load drift hits all of them alike.
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "conf/mini/bljust.yaml"))
    ap.add_argument("--steps", type=int, default=12, help="timed steps per system and round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=2.5, help="utterance length")
    ap.add_argument("--gamma", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import torch
    from espnet2.train.distributed_utils import DistributedOption
    from espnet2.train.reporter import Reporter

    from espnet_bilevel.iterators.bilevel_iter_factory import BilevelEpochIterator
    from espnet_bilevel.solvers.step_plan import joint_step, upper_step
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tokens = ["<blank>", "<unk>", "<space>"] + [chr(c) for c in range(65, 91)] + ["<sos/eos>"]
    work = Path(tempfile.mkdtemp(prefix="bench_step_cost_"))
    (work / "tokens.txt").write_text("\n".join(tokens) + "\n")
    args = BilevelASRTask.get_parser().parse_args(
        ["--config", a.config, "--token_list", str(work / "tokens.txt"), "--output_dir", str(work)]
    )
    args.log_interval = 10**9
    model = BilevelASRTask.build_model(args)
    optimizers = BilevelASRTask.build_optimizers(args, model)
    options = BilevelASRTask.trainer.build_options(args)
    n = int(a.seconds * 16000)
    g = torch.Generator().manual_seed(0)
    lab = dict(
        speech=torch.randn(a.batch, n, generator=g) * 0.1,
        speech_lengths=torch.full((a.batch,), n),
        text=torch.randint(3, len(tokens) - 1, (a.batch, 30), generator=g),
        text_lengths=torch.full((a.batch,), 30),
    )
    unlab = dict(speech=torch.randn(a.batch, n, generator=g) * 0.1,
                 speech_lengths=torch.full((a.batch,), n))
    ids = [f"u{i}" for i in range(a.batch)]
    systems = {
        "supervised": upper_step(),
        "weighted_sum": joint_step(a.gamma),
        "bljust": joint_step(a.gamma, loss_scaling=True),
    }
    times = {k: [] for k in systems}
    epoch = 0
    for _ in range(a.repeats):
        for name, spec in systems.items():
            epoch += 1
            plan = [spec] * (a.warmup + a.steps)
            lab_it = [(ids, {k: v.clone() for k, v in lab.items()})] * len(plan)
            unlab_it = [(ids, dict(unlab))] * len(plan)
            it = BilevelEpochIterator(epoch, iter(plan), len(plan), lab_it, unlab_it)
            reporter = Reporter()
            reporter.set_epoch(epoch)
            with reporter.observe("train") as sub:
                BilevelASRTask.trainer.train_one_epoch(
                    model=model, iterator=it, optimizers=optimizers, schedulers=[None, None],
                    scaler=None, reporter=sub, summary_writer=None, options=options,
                    distributed_option=DistributedOption(distributed=False),
                )
            steps = [json.loads(x) for x in (work / "steps" / f"epoch{epoch}.jsonl").open()]
            times[name] += [s["time"] for s in steps[a.warmup:]]
    params = sum(p.numel() for p in model.parameters())
    print(f"config={a.config} params={params} batch={a.batch}x{a.seconds}s threads={a.threads} "
          f"timed_steps={a.steps}x{a.repeats}")
    med = {}
    for name, ts in times.items():
        med[name] = statistics.median(ts)
        print(f"{name:13s} median {1000 * med[name]:8.1f} ms/step   mean {1000 * statistics.mean(ts):8.1f}")
    print(f"ratio bljust/weighted_sum = {med['bljust'] / med['weighted_sum']:.3f} (target <= 1.10)")
    print(f"ratio weighted_sum/supervised = {med['weighted_sum'] / med['supervised']:.3f}")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"wall {time.time() - t0:.1f} s")
