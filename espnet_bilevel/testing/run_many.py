"""Run several trainings of the bilevel task, one after another, in ONE Python process.

Under torchrun every rank pays ESPnet's ~17 s import once for all runs.  The process group
that the first run initialises is kept for the later runs (re-creating it on torchrun's store
hangs), so ESPnet's second ``init_process_group`` call is turned into a no-op here.

Usage:
  torchrun --nproc_per_node 2 -m espnet_bilevel.testing.run_many runs.json
  python -m espnet_bilevel.testing.run_many runs.json          # one process
where runs.json is a list of argument lists for espnet_bilevel.bin.bilevel_asr_train.
"""
import json
import sys


def main(argv=None):
    import torch

    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as f:
        runs = json.load(f)
    torch.set_num_threads(1)
    dist = torch.distributed
    if dist.is_available():
        original_init = dist.init_process_group

        def init_once(*args, **kwargs):
            if not dist.is_initialized():
                original_init(*args, **kwargs)

        dist.init_process_group = init_once
    for cmd in runs:
        BilevelASRTask.main(cmd=cmd)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()


if __name__ == "__main__":
    main()
