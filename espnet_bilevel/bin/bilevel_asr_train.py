#!/usr/bin/env python3
"""Train an ASR model with bilevel joint unsupervised + supervised training (BL-JUST and baselines).

Usage (normally called by egs2/*/asr1/run.sh stage 10/11; every espnet2.bin.asr_train option works):

  # print every option with its default, as YAML
  python -m espnet_bilevel.bin.bilevel_asr_train --print_config

  # statistics of the labeled and (-> <output_dir>/unlab/) the unlabeled stream
  python -m espnet_bilevel.bin.bilevel_asr_train --collect_stats true --config conf/x.yaml \\
      --token_list data/token_list/char/tokens.txt --output_dir exp/asr_stats \\
      --train_data_path_and_name_and_type data/train/wav.scp,speech,sound \\
      --train_data_path_and_name_and_type data/train/text,text,text \\
      --valid_data_path_and_name_and_type data/dev/wav.scp,speech,sound \\
      --valid_data_path_and_name_and_type data/dev/text,text,text \\
      --train_shape_file data/train/wav.scp --valid_shape_file data/dev/wav.scp \\
      --train_unlab_data_path_and_name_and_type data/train_unlab/wav.scp,speech,sound \\
      --train_unlab_shape_file data/train_unlab/wav.scp

  # training (BL-JUST; pick another system with --solver supervised|pretrain|weighted_sum|alternating)
  python -m espnet_bilevel.bin.bilevel_asr_train --config conf/tuning/train_bljust_cpc_tiny.yaml \\
      --solver bljust --normalize global_mvn --normalize_conf stats_file=exp/asr_stats/train/feats_stats.npz \\
      ... (data triples and shape files as above, shape files from exp/asr_stats) \\
      --train_unlab_shape_file exp/asr_stats/unlab/train/speech_shape --output_dir exp/bljust

  # resume an interrupted run (restores model, both optimizers/schedulers, epoch, data streams)
  python -m espnet_bilevel.bin.bilevel_asr_train <same arguments> --resume true

  # 2 CPU processes (gloo DDP); for GPUs use --ngpu N with ESPnet's launcher
  torchrun --nproc_per_node 2 -m espnet_bilevel.bin.bilevel_asr_train <args> --ngpu 0 \\
      --multiprocessing_distributed false --dist_backend gloo
"""
import sys


def get_parser():
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    return BilevelASRTask.get_parser()


def _record(fn):
    """Under torchrun, write a failing rank's exception to the error file, so the launcher
    reports that rank's traceback (and stops the other ranks) instead of a bare exit code."""
    try:
        from torch.distributed.elastic.multiprocessing.errors import record
    except ImportError:  # pragma: no cover
        return fn
    return record(fn)


@_record
def main(cmd=None):
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask, BilevelConfigError
    from espnet_bilevel.trainers.bilevel_trainer import NonFiniteTrainingError

    try:
        BilevelASRTask.main(cmd=cmd)
    except BilevelConfigError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteTrainingError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
