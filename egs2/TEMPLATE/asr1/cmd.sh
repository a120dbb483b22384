# shellcheck shell=bash
# cmd.sh: how bilevel_asr.sh starts its jobs (sourced by it; edit per site).
#
#   train_cmd   CPU jobs (data formatting, statistics, LM statistics)
#   cuda_cmd    training jobs (GPU when --ngpu > 0)
#   decode_cmd  decoding jobs (GPU only with --gpu_inference true)
#
# Every *_cmd is a command line whose program follows the interface of scripts/run_local.sh:
#   <cmd> [--gpu N] [--num_nodes N] [--mem M] [--num_threads N] [JOB=a:b] <log> <command...>
# Choose a backend with the environment variable cmd_backend (default: local):
#   local  run on this machine (like Kaldi's run.pl: just run, log, report failures)
#   slurm  every job through srun; set the partitions below (or SLURM_*_PARTITION in the env)
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        train_cmd="scripts/run_local.sh"
        cuda_cmd="scripts/run_local.sh"
        decode_cmd="scripts/run_local.sh"
        ;;
    slurm)
        train_cmd="scripts/run_slurm.sh --partition ${SLURM_CPU_PARTITION:-} --mem 8G --num_threads 2"
        cuda_cmd="scripts/run_slurm.sh --partition ${SLURM_GPU_PARTITION:-} --mem 32G --num_threads 4"
        decode_cmd="scripts/run_slurm.sh --partition ${SLURM_CPU_PARTITION:-} --mem 4G"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (use local or slurm)" >&2
        return 1
        ;;
esac
# shellcheck disable=SC2034  # used by the sourcing script
export train_cmd cuda_cmd decode_cmd
