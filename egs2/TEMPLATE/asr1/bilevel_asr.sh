#!/usr/bin/env bash
# shellcheck disable=SC2154  # option variables are assigned from OPTION_SPEC with printf -v
# bilevel_asr.sh: the staged ASR recipe of espnet-bilevel (BL-JUST and its baselines).
#
# Usage: ./bilevel_asr.sh --train_set <set> --valid_set <set> --test_sets "<sets>" \
#            [--train_unlab_set <set>] [--system all] [--stage 1] [--stop_stage 16] [options]
#        ./bilevel_asr.sh --help          # every option with its default
#
# Called by the thin egs2/<corpus>/asr1/run.sh of each recipe (which symlinks this file, cmd.sh,
# path.sh, scripts/ and pyscripts/ from egs2/TEMPLATE/asr1). Stage numbers and option names follow
# ESPnet's asr.sh, so an ESPnet user finds the same knobs; the implementation is our own and uses
# only the espnet wheel, this project's Python package, sox and (optionally) sclite.
#
# Stages (each one is skipped when its output is complete; outputs are written to *.tmp and
# renamed, so an interrupted stage never leaves a complete-looking result; on failure the script
# exits non-zero and names the log; rerunning continues from the failed stage):
#   1  data prep       local/data.sh (or --local_data_dir)  -> data/<sets>/{wav.scp,text,utt2spk,spk2utt}
#   2  speed perturb   data/<train_set> (sox)             -> data/<train_set>_sp   (only with factors)
#   3  format          data/<set>                         -> dump/<feats_type>/org/<train,valid,unlab>, dump/<feats_type>/<test>
#                      (--feats_type fbank also extracts log-mel filterbanks: feats.scp + ark, --nj jobs)
#   4  length filter   dump/<feats_type>/org/<set>        -> dump/<feats_type>/<train,valid,unlab>, dump/<feats_type>/lm_train.txt
#   5  token list      dump/<feats_type>/<train>/text     -> data/token_list/{char,bpe_<mode><n>}/tokens.txt
#   6  LM stats        (--use_lm true only)               -> exp/lm_stats_<token>/
#   7  LM training     espnet2.bin.lm_train               -> exp/lm_<tag>/
#   8  LM perplexity   espnet2.bin.lm_calc_perplexity     -> exp/lm_<tag>/perplexity_test/ppl
#   9  n-gram LM       not supported (no kenlm in our CI); skipped
#  10  ASR stats       labeled AND unlabeled stream       -> exp/asr_stats_<feats>_<token>[_sp]/{train,valid,unlab}
#  11  training        the selected systems               -> exp/asr_<system>_<tag>[_seed<k>]/ (.train.done marks the end)
#  12  export+decode   exported stock model, asr_inference -> exp/asr_<system>_<tag>/{export,<inference_tag>/<set>}
#  13  scoring         espnet_bilevel.bin.score (sclite + Python) -> <exp>/RESULTS.md, ./<results_file>
#  14  packing         espnet2.bin.pack asr (pack_many)   -> <exp>/<exp name>_<model>.zip
#  15  HF upload       model card + pack (or --hf_dry_run) -> huggingface.co/<hf_repo> | <exp>/hf_upload/
#  16  compare         espnet_bilevel.bin.compare_systems -> exp/compare_<tag>[<suffix>]/*.{md,png}, ./<results_file>
#
# Systems (--system, space-separated or "all" = --all_systems, by default supervised ptft just bljust):
#   supervised  labeled data only                       exp/asr_supervised_<tag>
#   ptft        SSL pre-training on the unlabeled set,  exp/asr_pt_<tag>, then supervised fine-tuning
#               then supervised FT (--init_param)       exp/asr_ptft_<tag>
#   bestrq_ptft ptft with BEST-RQ pre-training          exp/asr_bestrq_pt_<tag>, exp/asr_bestrq_ptft_<tag>
#               (--bestrq_pt_config)
#   birq_ptft   ptft with BiRQ pre-training             exp/asr_birq_pt_<tag>, exp/asr_birq_ptft_<tag>
#               (--birq_pt_config)
#   hubert_ptft ESPnet's HuBERT PT+FT as a reference,   exp/asr_hubert_pt_<tag>, exp/asr_hubert_ptft_<tag>
#               run by scripts/hubert_ptft.sh (raw audio only; in mini_synth's "all", not in the default --all_systems)
#   just        JUST: weighted sum of CTC + SSL losses   exp/asr_just_<tag>
#   bljust      BL-JUST: penalty-based bilevel training exp/asr_bljust_<tag>
#   birq_just   just with the BiRQ loss                 exp/asr_birq_just_<tag> (--birq_just_config)
#   birq_bljust bljust with the BiRQ lower level        exp/asr_birq_bljust_<tag> (--birq_bljust_config)
# With --seeds "1 2 3" every system is trained once per seed (exp dirs get _seed<k>) and stage 16
# reports mean ± std over the seeds.
#
# Measured cost on a 2-core CPU (mini_synth --small true, tiny models, its eight systems; 5 min 35 s
# for stages 1-16 with two other trainings on the cores): each Python process that imports ESPnet
# pays ~17 s of start-up. Stages 1-4: 2 s; 5: 8 s; 10: 27 s; 11: ~20-40 s per training run (10 runs,
# 199 s with --train_jobs 2); 12: 64 s (one export process + --inference_nj decoding processes for all
# systems and sets); 13: 3 s; 14: 21 s; 15: 2 s; 16: 5 s. Full numbers: egs2/TEMPLATE/asr1/README.md.
# --feats_type fbank: stages 1-4 take 11 s (one round of --nj extraction jobs for all sets, each
# paying ~3.5 s of torch start-up); --system bljust --stop_stage 13 took 2 min 32 s in total.
set -eEuo pipefail

SCRIPT_NAME=$(basename "$0")
# shellcheck source=scripts/log.sh
. scripts/log.sh

# ------------------------------------------------------------------------------------- options
# name|default|help  (options may be given as --name value, --name=value or --na-me value)
OPTION_SPEC=(
    "stage|1|first stage to run (1-16)"
    "stop_stage|10000|last stage to run"
    "skip_stages||stages to skip, space-separated (e.g. \"6 7 8\")"
    "ngpu|1|GPUs per node for training (0 = CPU)"
    "num_nodes|1|nodes for training (>1 needs cmd_backend=slurm)"
    "nj|4|parallel jobs for speed perturbation, formatting and statistics"
    "inference_nj|4|parallel decoding jobs (key files are split into this many parts)"
    "gpu_inference|false|decode on GPU"
    "datadir|data|where stage 1 puts the Kaldi-style data dirs (and stage 5 the token lists)"
    "dumpdir|dump|where formatted data dirs go"
    "expdir|exp|where experiments go"
    "python|python3|python interpreter (path.sh activates tools/venv)"
    "local_data_opts||options passed to local/data.sh (stage 1)"
    "local_data_dir||use existing Kaldi-style dirs <local_data_dir>/<set> instead of local/data.sh (stage 1)"
    "feats_type|raw|feature type: raw (waveforms, the model's frontend makes features) or fbank (stage 3 extracts log-mel filterbanks to dump/fbank/<set>/feats.scp; training uses --input_size, no frontend)"
    "n_mels|80|fbank: number of mel bins (feats_type fbank)"
    "frame_length|25|fbank: window length in ms (feats_type fbank)"
    "frame_shift|10|fbank: frame shift in ms (feats_type fbank)"
    "audio_format|keep|keep = leave readable audio in place; wav|flac = re-encode every file (stage 3)"
    "fs|16k|sampling rate (16k, 16000, 8k, ...)"
    "min_wav_duration|0.1|shortest training utterance in seconds (stage 4)"
    "max_wav_duration|20|longest training utterance in seconds (stage 4)"
    "token_type|char|char or bpe"
    "nbpe|30|number of BPE pieces (token_type bpe)"
    "bpemode|unigram|sentencepiece model type: unigram or bpe"
    "bpe_train_text||text for BPE / char token list (default: dump/<feats_type>/<train_set>/text)"
    "oov|<unk>|out-of-vocabulary symbol"
    "blank|<blank>|CTC blank symbol"
    "sos_eos|<sos/eos>|sos/eos symbol"
    "use_lm|false|train an LM (stages 6-8) and use it in decoding"
    "lm_config||LM training config (stage 7)"
    "lm_args||extra options for espnet2.bin.lm_train"
    "lm_tag||LM experiment tag (default: lm config name)"
    "lm_exp||LM experiment dir (default: <expdir>/lm_<lm_tag>)"
    "lm_train_text||LM training text (default: dump/<feats_type>/lm_train.txt)"
    "lm_dev_text||LM validation text (default: dump/<feats_type>/<valid_set>/text)"
    "lm_test_text||LM perplexity text (default: text of the first test set)"
    "speed_perturb_factors||speed perturbation factors for the labeled train set, e.g. \"0.9 1.0 1.1\" (stage 2)"
    "train_set||labeled training set (required)"
    "valid_set||validation set (required)"
    "test_sets||sets to decode, space-separated (required for stages 12-16)"
    "train_unlab_set||unlabeled training set (needed by every system but supervised)"
    "system|all|systems to train/decode: all (= --all_systems) or any of: supervised just bljust birq_just birq_bljust ptft bestrq_ptft birq_ptft hubert_ptft (scripts/systems.sh)"
    "all_systems|supervised ptft just bljust|the systems that --system all stands for (a recipe's run.sh may set its own set, e.g. mini_synth adds the BiRQ family and hubert_ptft; --feats_type fbank leaves out hubert_ptft)"
    "seeds||train every system once per seed, e.g. \"1 2 3\" (--seed <k>, exp dirs <exp>_seed<k>; stage 16 reports mean ± std); empty: one run with the config's seed"
    "asr_config||training config when --system names ONE system (PT+FT systems: the FT config)"
    "supervised_config|conf/supervised.yaml|config of the supervised system"
    "pt_config|conf/pretrain.yaml|config of the PT half of ptft (solver pretrain)"
    "bestrq_pt_config|conf/pretrain_bestrq.yaml|config of the PT half of bestrq_ptft (solver pretrain, BEST-RQ loss)"
    "birq_pt_config|conf/pretrain_birq.yaml|config of the PT half of birq_ptft (solver pretrain, BiRQ loss)"
    "ft_config||config of the FT half of ptft, bestrq_ptft and birq_ptft (default: --supervised_config)"
    "hubert_pt_config|conf/hubert_pretrain.yaml|HuBERT pre-training config of hubert_ptft (scripts/hubert_ptft.sh)"
    "hubert_ft_config|conf/hubert_finetune.yaml|stock ESPnet ASR fine-tuning config of hubert_ptft (scripts/hubert_ptft.sh)"
    "just_config|conf/weighted_sum.yaml|config of the JUST system (solver weighted_sum)"
    "bljust_config|conf/bljust.yaml|config of the BL-JUST system (solver bljust)"
    "birq_just_config|conf/weighted_sum_birq.yaml|config of birq_just (solver weighted_sum, BiRQ loss)"
    "birq_bljust_config|conf/bljust_birq.yaml|config of birq_bljust (solver bljust, BiRQ lower level)"
    "asr_tag||experiment tag: exp/asr_<system>_<tag> (default: <feats_type>_<token>[_sp])"
    "asr_exp||experiment dir when --system names one system (default: <expdir>/asr_<system>_<tag>)"
    "asr_stats_dir||statistics dir (default: <expdir>/asr_stats_<feats_type>_<token>[_sp])"
    "asr_args||extra options for every training run, e.g. \"--max_epoch 3\""
    "solver_args||extra options for the joint systems (solver weighted_sum/alternating/bljust: just, bljust, birq_just, birq_bljust), e.g. \"--solver_conf finetune_epochs=2\""
    "pt_args||extra options for the PT runs of ptft, bestrq_ptft and birq_ptft"
    "pt_model|valid.loss_ssl.best.pth|PT checkpoint that initializes the FT encoder (ptft, bestrq_ptft, birq_ptft)"
    "pretrained_model||--init_param for every trained system (e.g. exp/x/model.pth:encoder:encoder)"
    "ignore_init_mismatch|false|ignore size mismatches when loading --pretrained_model"
    "train_jobs|1|systems trained at the same time (stage 11; PT always finishes before FT)"
    "inference_config|conf/decode_ctc_greedy.yaml|decoding config (stage 12)"
    "inference_args||extra options for espnet2.bin.asr_inference"
    "inference_tag||decode dir name (default: decode_<inference config>_<model>[_lm])"
    "inference_asr_model|valid.cer_ctc.ave.pth|checkpoint (in each exp dir) that is exported and decoded"
    "inference_lm|valid.loss.ave.pth|LM checkpoint used for decoding with --use_lm true"
    "skip_packing|false|skip stage 14"
    "skip_upload_hf|true|skip stage 15"
    "hf_repo||Hugging Face repo for stage 15, e.g. user/bljust_mini (one system) or user/prefix (several: <prefix>_<system>)"
    "hf_dry_run|false|stage 15 writes the files it would upload to <exp>/hf_upload/ and uploads nothing"
    "results_file|RESULTS.md|recipe-level results file written by stages 13 and 16 (e.g. RESULTS_small.md for a CI-sized run, so it never overwrites the real one); stage 16 puts its plots in <stem>_figures/ next to it and its comparison in exp/compare_<tag><suffix> (RESULTS<suffix>.md)"
    "skip_compare|false|skip stage 16"
)
BOOL_OPTIONS="gpu_inference use_lm ignore_init_mismatch skip_packing skip_upload_hf hf_dry_run skip_compare"

declare -A OPTION_HELP=()
OPTION_NAMES=()
for _spec in "${OPTION_SPEC[@]}"; do
    IFS='|' read -r _name _default _help <<< "${_spec}"
    printf -v "${_name}" '%s' "${_default}"
    OPTION_HELP[${_name}]=${_help}
    OPTION_NAMES+=("${_name}")
done

usage() {
    sed -n '3,7p' "$0" | sed 's/^# \{0,1\}//'
    echo
    echo "Options (default in brackets; \"now:\" = the value set before --help, e.g. by a recipe's run.sh):"
    local spec name default help
    for spec in "${OPTION_SPEC[@]}"; do
        IFS='|' read -r name default help <<< "${spec}"
        if [ "${!name}" != "${default}" ]; then
            printf '  --%-22s %s [%s] (now: %s)\n' "${name}" "${help}" "${default}" "${!name}"
        else
            printf '  --%-22s %s [%s]\n' "${name}" "${help}" "${default}"
        fi
    done
    echo
    echo "Stages: 1 data, 2 speed perturb, 3 format, 4 filter, 5 tokens, 6-9 LM, 10 stats, 11 train,"
    echo "        12 export+decode, 13 score, 14 pack, 15 upload, 16 compare (see the header of $0)."
}

ORIGINAL_ARGS=("$@")
while [ $# -gt 0 ]; do
    case $1 in
        --help|-h) usage; exit 0 ;;
        --*=*) _opt=${1%%=*}; _val=${1#*=}; shift ;;
        --*)
            _opt=$1
            [ $# -ge 2 ] || { usage >&2; die "option $1 needs a value"; }
            _val=$2; shift 2 ;;
        *) usage >&2; die "unexpected argument '$1' (options look like --name value; see --help)" ;;
    esac
    _opt=${_opt#--}; _opt=${_opt//-/_}
    if [ -z "${OPTION_HELP[${_opt}]+set}" ]; then
        die "unknown option --${_opt} (see ${SCRIPT_NAME} --help for the list)"
    fi
    printf -v "${_opt}" '%s' "${_val}"
done
for _b in ${BOOL_OPTIONS}; do
    case ${!_b} in true|false) ;; *) die "--${_b} must be true or false, got '${!_b}'" ;; esac
done
for _n in stage stop_stage ngpu num_nodes nj inference_nj nbpe train_jobs n_mels; do
    [[ ${!_n} =~ ^[0-9]+$ ]] || die "--${_n} must be a non-negative integer, got '${!_n}'"
done
if [ "${nj}" -lt 1 ] || [ "${inference_nj}" -lt 1 ] || [ "${train_jobs}" -lt 1 ]; then
    die "--nj, --inference_nj and --train_jobs must be >= 1"
fi
[ "${n_mels}" -ge 1 ] || die "--n_mels must be >= 1"
for _n in frame_length frame_shift; do
    if ! [[ ${!_n} =~ ^[0-9]+(\.[0-9]+)?$ ]] || ! [[ ${!_n} =~ [1-9] ]]; then
        die "--${_n} must be a positive number of ms, got '${!_n}'"
    fi
done

# ------------------------------------------------------------------------------------- environment
[ -f path.sh ] || die "path.sh not found in $(pwd): run this script from a recipe dir (egs2/<corpus>/asr1)"
[ -f cmd.sh ] || die "cmd.sh not found in $(pwd)"
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./cmd.sh

# Split a command string from cmd.sh into words and run it with the given arguments.
run_cmd() {
    local cmd_string=$1; shift
    local -a words
    read -ra words <<< "${cmd_string}"
    "${words[@]}" "$@"
}

failed_what="stage 0"
rerun_hint="fix the problem and rerun with --stage 0 (finished stages are not redone)"
# on_error (ERR trap) and run_logged
# shellcheck source=scripts/error_trap.sh
. scripts/error_trap.sh
# write_seconds, wall_time_{begin,failed,done}, cpu_time_done (train_{wall,cpu}_seconds of stage 11)
# shellcheck source=scripts/wall_time.sh
. scripts/wall_time.sh
# run_pool (stage 11's parallel runs)
# shellcheck source=scripts/job_pool.sh
. scripts/job_pool.sh
# quote_args (the command line of this run, as RESULTS.md shows it)
# shellcheck source=scripts/shell_quote.sh
. scripts/shell_quote.sh
# publish_figures, figure_links (plots next to the recipe-level results file)
# shellcheck source=scripts/results_figures.sh
. scripts/results_figures.sh
# KNOWN_SYSTEMS, pt_run_of, system_of_run, config_opt_of, solver_of, is_pt_run, is_joint_run
# shellcheck source=scripts/systems.sh
. scripts/systems.sh

in_skip() { [[ " ${skip_stages} " == *" $1 "* ]]; }
run_stage() {
    # run_stage N: true if stage N is inside [stage, stop_stage] and not skipped
    local n=$1
    if [ "${stage}" -le "${n}" ] && [ "${stop_stage}" -ge "${n}" ] && ! in_skip "${n}"; then
        failed_what="stage ${n}"
        rerun_hint="fix the problem and rerun with --stage ${n} (finished stages are not redone)"
        # every process started from here on knows its stage (bench/cli_startup.py counts by it)
        export BILEVEL_STAGE=${n}
        return 0
    fi
    return 1
}
require_file() {
    # require_file <path> <what produces it>
    [ -e "$1" ] || die "${failed_what}: required input '$1' is missing; it is produced by $2"
}
require_opt() { [ -n "${!1}" ] || die "--$1 is required (see --help)"; }

# ------------------------------------------------------------------------------------- derived settings
require_opt train_set
require_opt valid_set
case ${feats_type} in
    raw|fbank) ;;
    fbank_pitch|extracted) die "--feats_type ${feats_type} is not supported (use raw or fbank; fbank_pitch needs Kaldi)" ;;
    *) die "--feats_type must be raw or fbank, got '${feats_type}'" ;;
esac
case ${token_type} in char|bpe) ;; *) die "--token_type must be char or bpe, got '${token_type}'" ;; esac
case ${fs} in
    *k) fs_hz=$(( ${fs%k} * 1000 )) ;;
    *) fs_hz=${fs} ;;
esac
[[ ${fs_hz} =~ ^[0-9]+$ ]] || die "--fs must look like 16k or 16000, got '${fs}'"

# systems: "all" is --all_systems (default: the four core systems of scripts/systems.sh); the
# others are selected by name (tables: scripts/systems.sh)
system_opt=system
if [ "${system}" = all ]; then
    system_opt=all_systems
    read -ra systems <<< "${all_systems}"
    # a scripted PT+FT system reads waveforms; with --feats_type fbank "all" means every system
    # that can train on filterbanks (naming one in --system still fails, below)
    if [ "${feats_type}" != raw ]; then
        _kept=()
        for _s in "${systems[@]}"; do
            if [ -n "${ptft_script_of[${_s}]:-}" ]; then
                log "--system all with --feats_type ${feats_type}: leaving out ${_s} (its script ${ptft_script_of[${_s}]} reads waveforms; it needs --feats_type raw)"
            else
                _kept+=("${_s}")
            fi
        done
        systems=("${_kept[@]}")
    fi
else
    read -ra systems <<< "${system}"
fi
[ "${#systems[@]}" -gt 0 ] || die "--${system_opt} is empty"
for _s in "${systems[@]}"; do
    [[ " ${KNOWN_SYSTEMS} " == *" ${_s} "* ]] \
        || die "--${system_opt}: unknown system '${_s}' (use all or any of: ${KNOWN_SYSTEMS})"
done
[ "$(printf '%s\n' "${systems[@]}" | sort | uniq -d)" = "" ] || die "--${system_opt} names a system twice: ${!system_opt}"
if [ -n "${asr_config}" ] || [ -n "${asr_exp}" ]; then
    [ "${#systems[@]}" -eq 1 ] || die "--asr_config/--asr_exp need --system to name exactly one system"
    if [ -n "${asr_config}" ]; then
        printf -v "${config_opt_of[${systems[0]}]}" '%s' "${asr_config}"
    fi
fi
[ -n "${ft_config}" ] || ft_config=${supervised_config}
# seeds: one run per seed ("" = a single run with the config's seed, exp dirs without a suffix)
read -ra seed_list <<< "${seeds}"
for _k in "${seed_list[@]}"; do
    [[ ${_k} =~ ^[0-9]+$ ]] || die "--seeds must be non-negative integers, e.g. \"1 2 3\", got '${seeds}'"
done
[ "$(printf '%s\n' "${seed_list[@]}" | sort | uniq -d)" = "" ] || die "--seeds names a seed twice: ${seeds}"
[ "${#seed_list[@]}" -gt 0 ] || seed_list=("")
needs_unlab=false
for _s in "${systems[@]}"; do [ "${_s}" = supervised ] || needs_unlab=true; done
if ${needs_unlab} && [ -z "${train_unlab_set}" ]; then
    die "--system ${system} needs unlabeled audio: give --train_unlab_set (or use --system supervised)"
fi

# data sets after speed perturbation (as asr.sh, later stages use <train_set>_sp)
org_train_set=${train_set}
if [ -n "${speed_perturb_factors}" ]; then
    train_set=${train_set}_sp
fi
read -ra test_set_list <<< "${test_sets}"

if [ "${token_type}" = bpe ]; then
    token_dir=${datadir}/token_list/bpe_${bpemode}${nbpe}
    bpemodel=${token_dir}/bpe.model
    token_suffix=bpe${nbpe}
else
    token_dir=${datadir}/token_list/char
    bpemodel=none
    token_suffix=char
fi
token_list=${token_dir}/tokens.txt
data_feats=${dumpdir}/${feats_type}
[ -n "${bpe_train_text}" ] || bpe_train_text=${data_feats}/${train_set}/text
tag_default=${feats_type}_${token_suffix}
[ -n "${speed_perturb_factors}" ] && tag_default=${tag_default}_sp
[ -n "${asr_tag}" ] || asr_tag=${tag_default}
[ -n "${asr_stats_dir}" ] || asr_stats_dir=${expdir}/asr_stats_${tag_default}
logdir=${expdir}/logs
# what the data loaders read (as asr.sh: raw audio, or extracted features with --input_size)
if [ "${feats_type}" = raw ]; then
    speech_file=wav.scp; speech_type=sound; speech_fold_length=80000
else
    speech_file=feats.scp; speech_type=kaldi_ark; speech_fold_length=800
fi

# LM
[ -n "${lm_train_text}" ] || lm_train_text=${data_feats}/lm_train.txt
[ -n "${lm_dev_text}" ] || lm_dev_text=${data_feats}/${valid_set}/text
if [ -z "${lm_test_text}" ] && [ "${#test_set_list[@]}" -gt 0 ]; then
    lm_test_text=${data_feats}/${test_set_list[0]}/text
fi
if [ -z "${lm_tag}" ]; then
    if [ -n "${lm_config}" ]; then lm_tag=$(basename "${lm_config}" .yaml)_${token_suffix}; else lm_tag=${token_suffix}; fi
fi
[ -n "${lm_exp}" ] || lm_exp=${expdir}/lm_${lm_tag}
lm_stats_dir=${expdir}/lm_stats_${token_suffix}

if [ -z "${inference_tag}" ]; then
    inference_tag=decode_$(basename "${inference_config}" .yaml)_$(basename "${inference_asr_model}" .pth)
    ${use_lm} && inference_tag=${inference_tag}_lm
fi

# exp dir of a system or of a PT run (pt, bestrq_pt, ...), for a seed ("" = no seed suffix)
exp_of() {
    local name=$1 seed=${2:-} base
    if [ -n "${asr_exp}" ] && [ "${name}" = "${systems[0]}" ]; then base=${asr_exp}
    elif [ -n "${asr_exp}" ] && [ "${name}" = "${pt_run_of[${systems[0]}]:-}" ]; then base=${asr_exp}_pt
    else base=${expdir}/asr_${name}_${asr_tag}; fi
    echo "${base}${seed:+_seed${seed}}"
}
config_of() { local opt=${config_opt_of[$1]}; echo "${!opt}"; }
# training runs of stage 11 as <run>@<seed>, in two waves: every FT half waits for the first wave
# (which holds its PT run); a scripted PT+FT system (hubert_ptft) is one run (its script does PT and FT)
first_wave=(); second_wave=()
for _s in "${systems[@]}"; do
    for _k in "${seed_list[@]}"; do
        if is_two_run_ptft "${_s}"; then
            first_wave+=("${pt_run_of[${_s}]}@${_k}"); second_wave+=("${_s}@${_k}")
        else
            first_wave+=("${_s}@${_k}")
        fi
    done
done
# scripted PT+FT systems (hubert_ptft: ESPnet's HuBERT PT+FT reference) run a script of the template
# (scripts/systems.sh names it); it reads waveforms
for _s in "${systems[@]}"; do
    _script=${ptft_script_of[${_s}]:-}
    [ -n "${_script}" ] || continue
    [ "${feats_type}" = raw ] || die "--system ${_s} supports --feats_type raw only (its script ${_script} reads waveforms), got '${feats_type}'"
    if [ "${stage}" -le 11 ] && [ "${stop_stage}" -ge 11 ] && ! [[ " ${skip_stages} " == *" 11 "* ]] \
            && [ ! -f "${_script}" ]; then
        die "--system ${_s} needs ${_script} (a script of egs2/TEMPLATE/asr1), which is missing in $(pwd); drop ${_s} from --system"
    fi
done
# stage 10 collects statistics with the first config that the bilevel task reads
stats_config=${supervised_config}
for _r in "${first_wave[@]}"; do
    if [ -z "${ptft_script_of[${_r%@*}]:-}" ]; then stats_config=$(config_of "${_r%@*}"); break; fi
done
if [ "${stage}" -le 11 ] && [ "${stop_stage}" -ge 10 ]; then
    _checks=()
    for _r in "${first_wave[@]}" "${second_wave[@]}"; do
        _r=${_r%@*}
        _checks+=("${_r}")
        [ -z "${ptft_script_of[${_r}]:-}" ] || _checks+=("${pt_run_of[${_r}]}")
    done
    for _r in "${_checks[@]}"; do
        _c=$(config_of "${_r}")
        [ -f "${_c}" ] || die "config of '${_r}' not found: ${_c} (see --${config_opt_of[${_r}]}${asr_config:+ / --asr_config})"
    done
    [ -f "${stats_config}" ] || die "config for the statistics (stage 10) not found: ${stats_config} (see --supervised_config)"
fi
# every (system, seed) pair of stages 12-16, system by system
item_system=(); item_seed=(); item_exp=()
for _s in "${systems[@]}"; do
    for _k in "${seed_list[@]}"; do
        item_system+=("${_s}"); item_seed+=("${_k}"); item_exp+=("$(exp_of "${_s}" "${_k}")")
    done
done

# the command line that made this run (run.sh sets BILEVEL_RUN_CMD to its own)
run_cmd_line=${BILEVEL_RUN_CMD:-$0$(quote_args "${ORIGINAL_ARGS[@]}")}
log "$0 ${ORIGINAL_ARGS[*]}"
log "systems: ${systems[*]}${seeds:+ (seeds: ${seeds})}; train_set=${train_set} unlab=${train_unlab_set:-none} valid=${valid_set} test=${test_sets:-none}"

# ============================================================================ stage 1: data prep
# reads:  local/data.sh (or --local_data_dir/<set>)
# writes: data/<train_set>, data/<valid_set>, data/<test sets>, data/<train_unlab_set>
all_org_sets=()
for _set in "${org_train_set}" "${valid_set}" "${test_set_list[@]}" "${train_unlab_set}"; do
    [ -n "${_set}" ] && [[ " ${all_org_sets[*]} " != *" ${_set} "* ]] && all_org_sets+=("${_set}")
done
if run_stage 1; then
    marker=${datadir}/.stage1.done
    if [ -f "${marker}" ]; then
        log "stage 1: ${marker} exists; skipped (delete it to redo data prep)"
    else
        log "stage 1: data preparation"
        mkdir -p "${datadir}"
        if [ -n "${local_data_dir}" ]; then
            for _set in "${all_org_sets[@]}"; do
                [ -d "${local_data_dir}/${_set}" ] || die "stage 1: --local_data_dir: ${local_data_dir}/${_set} not found"
                rm -rf "${datadir}/${_set}.tmp"
                cp -rL "${local_data_dir}/${_set}" "${datadir}/${_set}.tmp"
                rm -rf "${datadir:?}/${_set:?}"
                mv "${datadir}/${_set}.tmp" "${datadir}/${_set}"
            done
        else
            [ -x local/data.sh ] || die "stage 1: local/data.sh not found or not executable in $(pwd)"
            # shellcheck disable=SC2086  # local_data_opts is a list of options
            # local/data.sh writes into ${BILEVEL_DATADIR:-data}
            BILEVEL_DATADIR=${datadir} run_logged "${logdir}/stage1_data.log" local/data.sh ${local_data_opts}
        fi
        for _set in "${all_org_sets[@]}"; do
            for _f in wav.scp utt2spk; do
                [ -f "${datadir}/${_set}/${_f}" ] || die "stage 1: ${datadir}/${_set}/${_f} was not created by local/data.sh (log: ${logdir}/stage1_data.log)"
            done
        done
        touch "${marker}"
        log "stage 1: done: ${all_org_sets[*]}"
    fi
fi

# ============================================================================ stage 2: speed perturbation
# reads:  data/<train_set>
# writes: data/<train_set>_sp  (sox; factor 1.0 keeps the original utterances)
if run_stage 2; then
    if [ -z "${speed_perturb_factors}" ]; then
        log "stage 2: no --speed_perturb_factors; skipped"
    elif [ -f "${datadir}/${train_set}/wav.scp" ]; then
        log "stage 2: ${datadir}/${train_set} exists; skipped"
    else
        require_file "${datadir}/${org_train_set}/wav.scp" "stage 1 (data prep)"
        log "stage 2: speed perturbation ${speed_perturb_factors} of ${datadir}/${org_train_set}"
        run_logged "${logdir}/stage2_speed_perturb.log" "${python}" pyscripts/data_tools.py speed_perturb \
            --in "${datadir}/${org_train_set}" --out "${datadir}/${train_set}" \
            --factors "${speed_perturb_factors}" --fs "${fs_hz}" --nj "${nj}"
    fi
fi

# ============================================================================ stage 3: format
# reads:  data/<set>
# writes: dump/<feats_type>/org/<train,valid,unlab>, dump/<feats_type>/<test sets>: wav.scp (audio in
#         place unless it must be cut/resampled), text, utt2spk, spk2utt, utt2num_samples, fs,
#         feats_type, audio_format; with --feats_type fbank also feats.scp + fbank/feats.<n>.ark
#         (kaldiio), utt2num_frames, feats_shape, feats_dim, frame_shift, fbank.conf
format_set() {
    # format_set <src set> <dst dir> <text: yes|no>
    local src=${datadir}/$1 dst=$2 opts=()
    [ "$3" = no ] && opts+=(--no_text)
    fbank_dirs+=("${dst}")
    if [ -f "${dst}/utt2num_samples" ]; then
        log "stage 3: ${dst} exists; skipped"
        return 0
    fi
    require_file "${src}/wav.scp" "stage 1 (data prep)$([ "$1" = "${train_set}" ] && [ -n "${speed_perturb_factors}" ] && echo ' and stage 2 (speed perturbation)')"
    log "stage 3: ${src} -> ${dst}"
    run_logged "${logdir}/stage3_format_$(basename "${dst}").log" "${python}" pyscripts/data_tools.py format \
        --in "${src}" --out "${dst}" --fs "${fs_hz}" --audio_format "${audio_format}" --nj "${nj}" "${opts[@]}"
    run_logged "${logdir}/stage3_format_$(basename "${dst}").log" "${python}" -m espnet_bilevel.bin.validate_data_dir \
        "${dst}" --fs "${fs_hz}" --no_audio "${opts[@]}"
}
extract_fbank_sets() {
    # extract_fbank_sets <formatted dir>...: log-mel filterbanks of every dir without feats.scp.
    # Each dir's wav.scp is split into --nj parts under <dir>/fbank.work; job J of ONE round of
    # ${train_cmd} JOB=1:nj extracts part J of every dir (one torch start per job, not per set);
    # then each dir whose parts all finished is merged: arks moved to <dir>/fbank/, feats.scp
    # written last (so feats.scp marks a finished set; a failed round keeps the finished sets).
    local dst n j todo=() jobdir=${logdir}/stage3_fbank max_n=0 rc=0
    for dst in "$@"; do
        if [ -f "${dst}/feats.scp" ]; then
            log "stage 3: ${dst}/feats.scp exists; skipped"
        else
            todo+=("${dst}")
        fi
    done
    [ "${#todo[@]}" -gt 0 ] || return 0
    rm -rf "${jobdir}"; mkdir -p "${jobdir}"
    for dst in "${todo[@]}"; do
        rm -rf "${dst}/fbank.work"
        n=$("${python}" pyscripts/data_tools.py split --scp "${dst}/wav.scp" --nj "${nj}" --out_dir "${dst}/fbank.work/split")
        echo "${n}" > "${dst}/fbank.work/nj"
        [ "${n}" -gt "${max_n}" ] && max_n=${n}
        for (( j = 1; j <= n; j++ )); do
            printf '%s\t%s\t%s\t%s\n' "${dst}/fbank.work/split/wav.scp.${j}" "${dst}/fbank.work/ark/feats.${j}.ark" \
                "${dst}/fbank.work/feats.${j}.scp" "${dst}/fbank.work/utt2num_frames.${j}" >> "${jobdir}/jobs.${j}.tsv"
        done
    done
    log "stage 3: fbank (${n_mels} mel bins, ${frame_length}/${frame_shift} ms, ${fs_hz} Hz) of ${todo[*]} with ${max_n} job(s) (logs: ${jobdir}/extract.*.log)"
    run_cmd "${train_cmd}" JOB=1:"${max_n}" "${jobdir}/extract.JOB.log" \
        "${python}" -m espnet_bilevel.bin.extract_fbank extract --job_list "${jobdir}/jobs.JOB.tsv" \
        --fs "${fs_hz}" --n_mels "${n_mels}" --frame_length "${frame_length}" --frame_shift "${frame_shift}" || rc=$?
    for dst in "${todo[@]}"; do
        n=$(cat "${dst}/fbank.work/nj")
        for (( j = 1; j <= n; j++ )); do
            [ -f "${dst}/fbank.work/feats.${j}.info.json" ] || continue 2  # a job did not finish this set
        done
        run_logged "${logdir}/stage3_fbank_$(basename "${dst}").log" "${python}" -m espnet_bilevel.bin.extract_fbank merge \
            --work_dir "${dst}/fbank.work" --nj "${n}" --out_dir "${dst}" --wav_scp "${dst}/wav.scp"
        log "stage 3: $(tail -n 1 "${logdir}/stage3_fbank_$(basename "${dst}").log")"
    done
    if [ "${rc}" -ne 0 ]; then
        current_log=$(grep -l '^ERROR' "${jobdir}"/extract.*.log | head -n 1 || true)
        die "stage 3: fbank extraction failed: $(grep -h '^ERROR' "${jobdir}"/extract.*.log | head -n 1 || true) (logs: ${jobdir}/extract.*.log); fix it and rerun with --stage 3"
    fi
}
if run_stage 3; then
    fbank_dirs=()
    format_set "${train_set}" "${data_feats}/org/${train_set}" yes
    format_set "${valid_set}" "${data_feats}/org/${valid_set}" yes
    if [ -n "${train_unlab_set}" ] && [ "${train_unlab_set}" != "${train_set}" ]; then
        format_set "${train_unlab_set}" "${data_feats}/org/${train_unlab_set}" no
    fi
    for _set in "${test_set_list[@]}"; do
        # a test set that is also the train/valid set is decoded from its stage-4 copy (as asr.sh)
        if [ "${_set}" = "${valid_set}" ] || [ "${_set}" = "${train_set}" ]; then continue; fi
        format_set "${_set}" "${data_feats}/${_set}" yes
    done
    if [ "${feats_type}" = fbank ]; then extract_fbank_sets "${fbank_dirs[@]}"; fi
fi

# ============================================================================ stage 4: length filter
# reads:  dump/<feats_type>/org/<train,valid,unlab>
# writes: dump/<feats_type>/<train,valid,unlab> (min/max_wav_duration, no empty text; fbank: feats.scp
#         and the per-utterance feature tables filtered alike, arks stay in org/), dump/<feats_type>/lm_train.txt
filter_set() {
    local set=$1 text=$2 opts=()
    [ "${text}" = no ] && opts+=(--no_text)
    if [ -f "${data_feats}/${set}/utt2num_samples" ]; then
        log "stage 4: ${data_feats}/${set} exists; skipped"
        return 0
    fi
    require_file "${data_feats}/org/${set}/utt2num_samples" "stage 3 (format)"
    require_file "${data_feats}/org/${set}/${speech_file}" "stage 3 (format$([ "${feats_type}" = fbank ] && echo ', fbank extraction'))"
    run_logged "${logdir}/stage4_filter.log" "${python}" pyscripts/data_tools.py filter \
        --in "${data_feats}/org/${set}" --out "${data_feats}/${set}" \
        --min_sec "${min_wav_duration}" --max_sec "${max_wav_duration}" "${opts[@]}"
    log "stage 4: $(tail -n 1 "${logdir}/stage4_filter.log")"
}
if run_stage 4; then
    filter_set "${train_set}" yes
    filter_set "${valid_set}" yes
    if [ -n "${train_unlab_set}" ] && [ "${train_unlab_set}" != "${train_set}" ]; then
        filter_set "${train_unlab_set}" no
    fi
    if [ ! -f "${data_feats}/lm_train.txt" ]; then
        cut -d' ' -f2- "${data_feats}/${train_set}/text" > "${data_feats}/lm_train.txt.tmp"
        mv "${data_feats}/lm_train.txt.tmp" "${data_feats}/lm_train.txt"
    fi
fi
# the unlabeled set lives in dump/<feats_type>/<train_set> when it is the labeled audio reused (mini_an4)
unlab_dir=${data_feats}/${train_unlab_set}

# ============================================================================ stage 5: token list
# reads:  --bpe_train_text (default dump/<feats_type>/<train_set>/text)
# writes: data/token_list/char/tokens.txt or data/token_list/bpe_<mode><n>/{bpe.model,tokens.txt}
if run_stage 5; then
    if [ -f "${token_list}" ]; then
        log "stage 5: ${token_list} exists; skipped"
    else
        require_file "${bpe_train_text}" "stage 4 (length filter)"
        log "stage 5: ${token_type} token list from ${bpe_train_text}"
        if [ "${token_type}" = bpe ]; then
            run_logged "${logdir}/stage5_tokens.log" "${python}" pyscripts/data_tools.py bpe \
                --text "${bpe_train_text}" --out_dir "${token_dir}" --nbpe "${nbpe}" --bpemode "${bpemode}"
        else
            rm -rf "${token_dir}.tmp"; mkdir -p "${token_dir}.tmp"
            run_logged "${logdir}/stage5_tokens.log" "${python}" -m espnet2.bin.tokenize_text \
                --token_type char --input "${bpe_train_text}" --output "${token_dir}.tmp/tokens.txt" \
                --field 2- --cleaner none --g2p none --write_vocabulary true \
                --add_symbol "${blank}:0" --add_symbol "${oov}:1" --add_symbol "${sos_eos}:-1"
            rm -rf "${token_dir}"; mv "${token_dir}.tmp" "${token_dir}"
        fi
        log "stage 5: $(wc -l < "${token_list}") tokens in ${token_list}"
    fi
fi

# ============================================================================ stages 6-9: LM
# reads:  dump/<feats_type>/lm_train.txt (--lm_train_text), --lm_dev_text, --lm_test_text, token list
# writes: exp/lm_stats_<token>/, exp/lm_<tag>/ (valid.loss.ave.pth), exp/lm_<tag>/perplexity_test/ppl
lm_token_args=(--token_type "${token_type}" --token_list "${token_list}" --bpemodel "${bpemodel}"
               --non_linguistic_symbols none --cleaner none --g2p none)
if ${use_lm}; then
    if run_stage 6; then
        if [ -f "${lm_stats_dir}/.done" ]; then
            log "stage 6: ${lm_stats_dir} exists; skipped"
        else
            require_file "${token_list}" "stage 5 (token list)"
            require_file "${lm_train_text}" "stage 4 (length filter)"
            [ -n "${lm_config}" ] || die "stage 6: --use_lm true needs --lm_config"
            log "stage 6: LM statistics"
            for _t in "${lm_train_text}" "${lm_dev_text}"; do require_file "${_t}" "stage 4"; done
            # keyed copies of the LM texts (lm_train.txt has no utterance ids)
            mkdir -p "${lm_stats_dir}.tmp"
            awk '{print "lm" NR " " $0}' "${lm_train_text}" > "${lm_stats_dir}.tmp/train.txt"
            cp "${lm_dev_text}" "${lm_stats_dir}.tmp/dev.txt"
            run_logged "${logdir}/stage6_lm_stats.log" "${python}" -m espnet2.bin.lm_train --collect_stats true \
                "${lm_token_args[@]}" --config "${lm_config}" --ngpu 0 \
                --train_data_path_and_name_and_type "${lm_stats_dir}.tmp/train.txt,text,text" \
                --valid_data_path_and_name_and_type "${lm_stats_dir}.tmp/dev.txt,text,text" \
                --train_shape_file "${lm_stats_dir}.tmp/train.txt" --valid_shape_file "${lm_stats_dir}.tmp/dev.txt" \
                --output_dir "${lm_stats_dir}.tmp/stats"
            for _m in train valid; do
                "${python}" pyscripts/data_tools.py vocab_suffix --in "${lm_stats_dir}.tmp/stats/${_m}/text_shape" \
                    --token_list "${token_list}" --out "${lm_stats_dir}.tmp/stats/${_m}/text_shape.${token_type}"
            done
            touch "${lm_stats_dir}.tmp/.done"
            rm -rf "${lm_stats_dir}"; mv "${lm_stats_dir}.tmp" "${lm_stats_dir}"
        fi
    fi
    if run_stage 7; then
        if [ -f "${lm_exp}/.train.done" ]; then
            log "stage 7: ${lm_exp} trained; skipped"
        else
            require_file "${lm_stats_dir}/.done" "stage 6 (LM statistics)"
            log "stage 7: LM training -> ${lm_exp} (log: ${lm_exp}/train.log)"
            # shellcheck disable=SC2086  # lm_args is a list of options
            run_logged "${lm_exp}/train.log" "${python}" -m espnet2.bin.lm_train \
                "${lm_token_args[@]}" --config "${lm_config}" --ngpu "${ngpu}" --resume true \
                --train_data_path_and_name_and_type "${lm_stats_dir}/train.txt,text,text" \
                --valid_data_path_and_name_and_type "${lm_stats_dir}/dev.txt,text,text" \
                --train_shape_file "${lm_stats_dir}/stats/train/text_shape.${token_type}" \
                --valid_shape_file "${lm_stats_dir}/stats/valid/text_shape.${token_type}" \
                --fold_length 150 --output_dir "${lm_exp}" ${lm_args}
            touch "${lm_exp}/.train.done"
        fi
    fi
    if run_stage 8; then
        if [ -f "${lm_exp}/perplexity_test/ppl" ]; then
            log "stage 8: $(cat "${lm_exp}/perplexity_test/ppl" 2>/dev/null) (exists; skipped)"
        else
            require_file "${lm_exp}/.train.done" "stage 7 (LM training)"
            require_file "${lm_test_text}" "stage 3 (format)"
            log "stage 8: LM perplexity on ${lm_test_text}"
            rm -rf "${lm_exp}/perplexity_test.tmp"
            run_logged "${lm_exp}/perplexity_test.log" "${python}" -m espnet2.bin.lm_calc_perplexity --ngpu 0 \
                --data_path_and_name_and_type "${lm_test_text},text,text" \
                --train_config "${lm_exp}/config.yaml" --model_file "${lm_exp}/${inference_lm}" \
                --output_dir "${lm_exp}/perplexity_test.tmp" --log_level INFO
            mv "${lm_exp}/perplexity_test.tmp" "${lm_exp}/perplexity_test"
            log "stage 8: $(cat "${lm_exp}/perplexity_test/ppl")"
        fi
    fi
    if run_stage 9; then
        log "stage 9: n-gram LMs (kenlm) are not supported by this template; skipped"
    fi
else
    for _n in 6 7 8 9; do
        if run_stage "${_n}"; then log "stage ${_n}: --use_lm false; skipped"; fi
    done
fi

# ============================================================================ stage 10: ASR statistics
# reads:  dump/<feats_type>/<train_set,valid_set,train_unlab_set>/{wav.scp|feats.scp,text}, token list
# writes: <asr_stats_dir>/{train,valid}/{speech_shape,text_shape.<token>,feats_stats.npz},
#         <asr_stats_dir>/unlab/train/speech_shape (the unlabeled stream)
train_common_args=(--use_preprocessor true --token_type "${token_type}" --token_list "${token_list}"
                   --bpemodel "${bpemodel}" --non_linguistic_symbols none --cleaner none --g2p none)
# feature dimension of extracted features (as asr.sh: --input_size makes the model frontend-less)
feats_dim_of() {
    local f=${data_feats}/${train_set}/feats_dim
    require_file "${f}" "stage 3 (fbank extraction) and stage 4 (length filter)"
    cat "${f}"
}
if run_stage 10; then
    if [ -f "${asr_stats_dir}/.done" ]; then
        log "stage 10: ${asr_stats_dir} exists; skipped"
    else
        require_file "${token_list}" "stage 5 (token list)"
        for _d in "${data_feats}/${train_set}" "${data_feats}/${valid_set}"; do
            require_file "${_d}/${speech_file}" "stage 4 (length filter)"
        done
        if [ -n "${train_unlab_set}" ]; then require_file "${unlab_dir}/${speech_file}" "stage 4 (length filter)"; fi
        _feats_args=()
        [ "${feats_type}" = raw ] || _feats_args=(--input_size "$(feats_dim_of)")
        _tmp=${asr_stats_dir}.tmp
        rm -rf "${_tmp}"; mkdir -p "${_tmp}/logdir"
        # split the key files so that --nj jobs share the work
        _nj=$(( nj < $(wc -l < "${data_feats}/${valid_set}/${speech_file}") ? nj : $(wc -l < "${data_feats}/${valid_set}/${speech_file}") ))
        _sets=("${train_set}" "${valid_set}")
        [ -n "${train_unlab_set}" ] && _sets+=("${train_unlab_set}")
        for _set in "${_sets[@]}"; do
            _n=$(wc -l < "${data_feats}/${_set}/${speech_file}")
            [ "${_n}" -lt "${_nj}" ] && _nj=${_n}
        done
        for _set in "${_sets[@]}"; do
            "${python}" pyscripts/data_tools.py split --scp "${data_feats}/${_set}/${speech_file}" --nj "${_nj}" \
                --out_dir "${_tmp}/logdir/keys_${_set}" > /dev/null
        done
        _unlab_args=()
        if [ -n "${train_unlab_set}" ]; then
            _unlab_args=(--train_unlab_data_path_and_name_and_type "${unlab_dir}/${speech_file},speech,${speech_type}"
                         --train_unlab_shape_file "${_tmp}/logdir/keys_${train_unlab_set}/${speech_file}.JOB")
        fi
        log "stage 10: statistics with ${_nj} job(s) (config ${stats_config}; logs: ${_tmp}/logdir/stats.*.log)"
        current_log=${_tmp}/logdir/stats.1.log
        run_cmd "${train_cmd}" JOB=1:"${_nj}" "${_tmp}/logdir/stats.JOB.log" \
            "${python}" -m espnet_bilevel.bin.bilevel_asr_train --collect_stats true --ngpu 0 \
            "${train_common_args[@]}" --config "${stats_config}" "${_feats_args[@]}" \
            --train_data_path_and_name_and_type "${data_feats}/${train_set}/${speech_file},speech,${speech_type}" \
            --train_data_path_and_name_and_type "${data_feats}/${train_set}/text,text,text" \
            --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/${speech_file},speech,${speech_type}" \
            --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/text,text,text" \
            --train_shape_file "${_tmp}/logdir/keys_${train_set}/${speech_file}.JOB" \
            --valid_shape_file "${_tmp}/logdir/keys_${valid_set}/${speech_file}.JOB" \
            "${_unlab_args[@]}" --output_dir "${_tmp}/logdir/stats.JOB"
        _in=(); _in_unlab=()
        for (( _j = 1; _j <= _nj; _j++ )); do
            _in+=(--input_dir "${_tmp}/logdir/stats.${_j}")
            _in_unlab+=(--input_dir "${_tmp}/logdir/stats.${_j}/unlab")
        done
        run_logged "${logdir}/stage10_aggregate.log" "${python}" pyscripts/data_tools.py aggregate_stats \
            "${_in[@]}" --output_dir "${_tmp}/labeled"
        mv "${_tmp}/labeled/train" "${_tmp}/labeled/valid" "${_tmp}/"
        rmdir "${_tmp}/labeled"
        if [ -n "${train_unlab_set}" ]; then
            run_logged "${logdir}/stage10_aggregate.log" "${python}" pyscripts/data_tools.py aggregate_stats \
                "${_in_unlab[@]}" --output_dir "${_tmp}/unlab"
        fi
        for _m in train valid; do
            "${python}" pyscripts/data_tools.py vocab_suffix --in "${_tmp}/${_m}/text_shape" \
                --token_list "${token_list}" --out "${_tmp}/${_m}/text_shape.${token_type}"
        done
        touch "${_tmp}/.done"
        rm -rf "${asr_stats_dir}"; mv "${_tmp}" "${asr_stats_dir}"
        log "stage 10: done: ${asr_stats_dir}"
    fi
fi

# ============================================================================ stage 11: training
# reads:  dump/<feats_type>/<sets>, <asr_stats_dir>, token list, the system configs
# writes: exp/asr_<run>_<tag>[_seed<k>]/ (ESPnet files, steps/*.jsonl, train.log, train_wall_seconds,
#         train_cpu_seconds, .train.done); train_wall_seconds = one integer, the seconds of the training
#         command; train_cpu_seconds = its CPU seconds (user + system; cmd_backend=local only)
#         (plus those of failed earlier attempts, kept in .train_wall_partial until it succeeds)
train_one() {
    # train_one <run>@<seed>  (run = a system or a PT run: pt, bestrq_pt, birq_pt; seed "" = the config's)
    local run=${1%@*} seed=${1#*@} exp config solver
    exp=$(exp_of "${run}" "${seed}")
    if [ -f "${exp}/.train.done" ]; then
        log "stage 11: ${exp} already trained; skipped"
        return 0
    fi
    mkdir -p "${exp}"
    # re-running command for this experiment, as asr.sh writes <exp>/run.sh
    {
        echo '#!/usr/bin/env bash'
        echo "# re-runs stage 11 of this experiment (the same options as the run that created it)"
        printf 'cd %q && %q' "$(pwd)" "$0"
        printf ' %q' "${ORIGINAL_ARGS[@]}" --stage 11 --stop_stage 11 --system "${system_of_run[${run}]:-${run}}"
        [ -z "${seed}" ] || printf ' %q' --seeds "${seed}"
        echo
    } > "${exp}/run.sh"
    chmod +x "${exp}/run.sh"
    if [ -n "${ptft_script_of[${run}]:-}" ]; then
        train_scripted_ptft "${run}" "${exp}" "${seed}" || return 1
        return 0
    fi
    config=$(config_of "${run}")
    solver=$(solver_of "${run}") || return 1
    local -a args=("${train_common_args[@]}" --config "${config}" --solver "${solver}"
        --normalize global_mvn --normalize_conf "stats_file=${asr_stats_dir}/train/feats_stats.npz"
        --train_data_path_and_name_and_type "${data_feats}/${train_set}/${speech_file},speech,${speech_type}"
        --train_data_path_and_name_and_type "${data_feats}/${train_set}/text,text,text"
        --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/${speech_file},speech,${speech_type}"
        --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/text,text,text"
        --train_shape_file "${asr_stats_dir}/train/speech_shape"
        --train_shape_file "${asr_stats_dir}/train/text_shape.${token_type}"
        --valid_shape_file "${asr_stats_dir}/valid/speech_shape"
        --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_type}"
        --fold_length "${speech_fold_length}" --fold_length 150 --resume true --output_dir "${exp}")
    # extracted features: no frontend, the model reads <feats_dim>-dim vectors (as asr.sh --input_size)
    [ "${feats_type}" = raw ] || args+=(--input_size "$(feats_dim_of)")
    # the unlabeled stream: every run but supervised and the FT halves of the PT+FT systems
    if [ "${solver}" != supervised ]; then
        args+=(--train_unlab_data_path_and_name_and_type "${unlab_dir}/${speech_file},speech,${speech_type}"
               --train_unlab_shape_file "${asr_stats_dir}/unlab/train/speech_shape")
    fi
    if [ -n "${pt_run_of[${run}]:-}" ]; then
        local pt_exp
        pt_exp=$(exp_of "${pt_run_of[${run}]}" "${seed}")
        [ -e "${pt_exp}/${pt_model}" ] || die "stage 11: PT model ${pt_exp}/${pt_model} is missing (the PT run of ${run} did not finish)"
        args+=(--init_param "${pt_exp}/${pt_model}:encoder:encoder")
    elif [ -n "${pretrained_model}" ]; then
        args+=(--init_param "${pretrained_model}" --ignore_init_mismatch "${ignore_init_mismatch}")
    fi
    local -a extra=()
    # shellcheck disable=SC2206  # these options are lists of words
    extra=(${asr_args})
    # shellcheck disable=SC2206
    if is_joint_run "${run}"; then extra+=(${solver_args}); fi
    # shellcheck disable=SC2206
    if is_pt_run "${run}"; then extra+=(${pt_args}); fi
    [ -z "${seed}" ] || extra+=(--seed "${seed}")
    log "stage 11: training ${run}${seed:+ (seed ${seed})} (solver ${solver}, ${config}) -> ${exp} (log: ${exp}/train.log)"
    wall_time_begin "${exp}"
    local rc=0
    if [ "${num_nodes}" -gt 1 ]; then
        [ "${cmd_backend}" = slurm ] || die "--num_nodes ${num_nodes} needs cmd_backend=slurm"
        run_cmd "${cuda_cmd}" --gpu "${ngpu}" --num_nodes "${num_nodes}" "${exp}/train.log" \
            "${python}" -m espnet_bilevel.bin.bilevel_asr_train "${args[@]}" "${extra[@]}" \
            --ngpu "${ngpu}" --multiprocessing_distributed true --dist_launcher slurm \
            --dist_init_method "file://$(pwd)/${exp}/.dist_init_$(date +%s%N)" || rc=$?
    elif [ "${ngpu}" -gt 1 ]; then
        "${python}" -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${run}" --log "${exp}/train.log" \
            --ngpu "${ngpu}" --num_nodes 1 --init_file_prefix "${exp}/.dist_init_" --multiprocessing_distributed true -- \
            "${python}" -m espnet_bilevel.bin.bilevel_asr_train "${args[@]}" "${extra[@]}" || rc=$?
    else
        local cmd=${train_cmd}
        [ "${ngpu}" -gt 0 ] && cmd=${cuda_cmd}
        run_cmd "${cmd}" --gpu "${ngpu}" "${exp}/train.log" \
            "${python}" -m espnet_bilevel.bin.bilevel_asr_train "${args[@]}" "${extra[@]}" --ngpu "${ngpu}" || rc=$?
    fi
    if [ "${rc}" -ne 0 ]; then
        wall_time_failed "${exp}"  # a resumed run reports the total
        log "ERROR: training ${run} failed (exit ${rc}); log: ${exp}/train.log"
        tail -n 8 "${exp}/train.log" >&2 || true
        return 1
    fi
    # CPU time only where the training processes are this shell's children (not under slurm)
    [ "${cmd_backend}" != local ] || cpu_time_done "${exp}" "${exp}/train_cpu_seconds"
    write_seconds "${exp}/train_wall_seconds" "$(wall_time_done "${exp}")"
    touch "${exp}/.train.done"
    log "stage 11: ${run} finished in $(cat "${exp}/train_wall_seconds") s"
}
# train_scripted_ptft <system> <ft exp> <seed>: a PT+FT system whose script (ptft_script_of in
# scripts/systems.sh) trains both halves; hubert_ptft: scripts/hubert_ptft.sh pre-trains
# <expdir>/asr_hubert_pt_<tag> with espnet2's HuBERT task and fine-tunes a stock ESPnet ASR model
# in <ft exp>. Contract: the script takes the options below; on success it leaves
# in <ft exp> config.yaml (stock ASRTask config), <inference_asr_model> (valid.cer_ctc.ave.pth),
# train.log, train_wall_seconds and .train.done, and in <pt exp> train_wall_seconds and
# .train.done; train_wall_seconds is written as by train_one (one integer: the seconds of that
# half's training command, plus those of failed earlier attempts). Stage 16 adds the two.
train_scripted_ptft() {
    local run=$1 ft_exp=$2 seed=$3 pt_exp log_file rc=0 f script
    script=${ptft_script_of[${run}]}
    pt_exp=$(exp_of "${pt_run_of[${run}]}" "${seed}")
    log_file=${logdir}/stage11_$(basename "${ft_exp}").log
    [ -f "${script}" ] || die "stage 11: ${script} is missing (needed by --system ${run})"
    local -a opts=(--python "${python}" --train_dir "${data_feats}/${train_set}" --unlab_dir "${unlab_dir}"
        --valid_dir "${data_feats}/${valid_set}" --token_list "${token_list}" --token_type "${token_type}"
        --asr_stats_dir "${asr_stats_dir}" --pt_config "$(config_of "${pt_run_of[${run}]}")" --ft_config "$(config_of "${run}")"
        --pt_exp "${pt_exp}" --ft_exp "${ft_exp}" --ngpu "${ngpu}")
    [ "${token_type}" != bpe ] || opts+=(--bpemodel "${bpemodel}")
    # --asr_args (and the seed) go to both halves; --pt_args and --solver_args are for our own solvers
    local half_args=${asr_args}
    [ -z "${seed}" ] || half_args="${half_args:+${half_args} }--seed ${seed}"
    [ -z "${half_args}" ] || opts+=(--pt_args "${half_args}" --ft_args "${half_args}")
    local cmd=${train_cmd}
    [ "${ngpu}" -eq 0 ] || cmd=${cuda_cmd}
    log "stage 11: training ${run} (${script}: $(config_of "${pt_run_of[${run}]}"), $(config_of "${run}")) -> ${pt_exp}, ${ft_exp} (log: ${log_file})"
    mkdir -p "$(dirname "${log_file}")"
    run_cmd "${cmd}" --gpu "${ngpu}" "${log_file}" bash "${script}" "${opts[@]}" || rc=$?
    if [ "${rc}" -ne 0 ]; then
        log "ERROR: training ${run} failed (exit ${rc}); log: ${log_file}"
        tail -n 8 "${log_file}" >&2 || true
        return 1
    fi
    for f in config.yaml "${inference_asr_model}" train.log train_wall_seconds .train.done; do
        if [ ! -e "${ft_exp}/${f}" ]; then
            log "ERROR: ${script} finished but left no ${ft_exp}/${f} (see the contract above train_scripted_ptft in ${SCRIPT_NAME}); log: ${log_file}"
            return 1
        fi
    done
    [ -f "${pt_exp}/train_wall_seconds" ] \
        || log "WARNING: ${pt_exp}/train_wall_seconds is missing: stage 16 shows no wall time for ${run}"
    log "stage 11: ${run} finished: PT $(cat "${pt_exp}/train_wall_seconds" 2>/dev/null || echo '?') s, FT $(cat "${ft_exp}/train_wall_seconds") s"
}
# train_batch <run@seed>...: at most --train_jobs runs at the same time (scripts/job_pool.sh starts the
# next run as soon as any one ends, so already-trained runs that are skipped free their slot at once)
report_failed_run() {
    local label=${1%@*}
    [ -z "${1#*@}" ] || label+=" (seed ${1#*@})"
    log "ERROR: training run ${label} failed"
}
train_batch() {
    run_pool "${train_jobs}" train_one report_failed_run "$@"
}
if run_stage 11; then
    require_file "${asr_stats_dir}/.done" "stage 10 (statistics)"
    require_file "${token_list}" "stage 5 (token list)"
    _rc=0
    train_batch "${first_wave[@]}" || _rc=$?
    if [ "${_rc}" -eq 0 ] && [ "${#second_wave[@]}" -gt 0 ]; then train_batch "${second_wave[@]}" || _rc=$?; fi
    if [ "${_rc}" -ne 0 ]; then
        current_log=""
        die "stage 11 failed; see the train.log files named above, then rerun with --stage 11"
    fi
fi

# ============================================================================ stage 12: export + decode
# reads:  exp/asr_<system>_<tag>/{config.yaml,<inference_asr_model>}, dump/<feats_type>/<test sets>
#         (wav.scp as sound, or feats.scp as kaldi_ark)
# writes: <exp>/export/{config.yaml,model.pth} (stock ESPnet model), <exp>/<inference_tag>/<set>/{text,token,
#         token_int,score}, logs in exp/decode_jobs/<tag>/<inference_tag>/<systems>[_seeds_<seeds>]/
lm_decode_args=()
if ${use_lm}; then
    lm_decode_args=(--lm_train_config "${lm_exp}/config.yaml" --lm_file "${lm_exp}/${inference_lm}")
fi
if run_stage 12; then
    [ "${#test_set_list[@]}" -gt 0 ] || die "stage 12: --test_sets is empty"
    for _i in "${!item_exp[@]}"; do
        require_file "${item_exp[${_i}]}/.train.done" "stage 11 (training of ${item_system[${_i}]})"
    done
    if ${use_lm}; then require_file "${lm_exp}/${inference_lm}" "stage 7 (LM training)"; fi
    for _set in "${test_set_list[@]}"; do require_file "${data_feats}/${_set}/${speech_file}" "stages 3-4 (format, filter)"; done
    # one job dir per --asr_tag and set of runs (systems, seeds): two recipe runs that decode other
    # systems or seeds at the same time do not touch each other's job files and logs
    _jobdir=${expdir}/decode_jobs/${asr_tag}/${inference_tag}/$(IFS=_; echo "${systems[*]}")${seeds:+_seeds_$(IFS=_; echo "${seed_list[*]}")}
    rm -rf "${_jobdir}"; mkdir -p "${_jobdir}"
    _exports=()
    for _exp in "${item_exp[@]}"; do _exports+=(--exp "${_exp}"); done
    log "stage 12: exporting ${systems[*]}${seeds:+ (seeds: ${seeds})} as stock ESPnet models (${inference_asr_model})"
    run_logged "${_jobdir}/export.log" "${python}" -m espnet_bilevel.bin.export_many \
        "${_exports[@]}" --model "${inference_asr_model}" --out_name export
    # one job file per parallel decoding process; each process decodes its key split of every
    # (system, test set) pair that is not finished yet
    _todo=()
    for _exp in "${item_exp[@]}"; do
        for _set in "${test_set_list[@]}"; do
            _dir=${_exp}/${inference_tag}/${_set}
            if [ -f "${_dir}/.done" ]; then
                log "stage 12: ${_dir} exists; skipped"
                continue
            fi
            _n=$("${python}" pyscripts/data_tools.py split --scp "${data_feats}/${_set}/${speech_file}" \
                 --nj "${inference_nj}" --out_dir "${_dir}/keys")
            for (( _j = 1; _j <= _n; _j++ )); do
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${_dir}/logdir/output.${_j}" "${_exp}/export/config.yaml" \
                    "${_exp}/export/model.pth" "${data_feats}/${_set}/${speech_file}" \
                    "${_dir}/keys/${speech_file}.${_j}" "${speech_type}" >> "${_jobdir}/jobs.${_j}.tsv"
            done
            _todo+=("${_dir}:${_n}")
        done
    done
    if [ "${#_todo[@]}" -gt 0 ]; then
        _nproc=$(find "${_jobdir}" -name 'jobs.*.tsv' | wc -l)
        _dcmd=${decode_cmd}; _dngpu=0
        if ${gpu_inference}; then _dcmd=${cuda_cmd}; _dngpu=1; fi
        # shellcheck disable=SC2206  # inference_args is a list of options
        _iargs=(${inference_args})
        log "stage 12: decoding ${#_todo[@]} (system, set) pairs with ${_nproc} process(es) (logs: ${_jobdir}/decode.*.log)"
        current_log=${_jobdir}/decode.1.log
        run_cmd "${_dcmd}" --gpu "${_dngpu}" JOB=1:"${_nproc}" "${_jobdir}/decode.JOB.log" \
            "${python}" -m espnet_bilevel.bin.decode_many --jobs "${_jobdir}/jobs.JOB.tsv" -- \
            --config "${inference_config}" --ngpu "${_dngpu}" --batch_size 1 "${lm_decode_args[@]}" "${_iargs[@]}"
        current_log=""
        # merge the splits
        for _item in "${_todo[@]}"; do
            _dir=${_item%:*}; _n=${_item##*:}
            for _f in text token token_int score; do
                for (( _j = 1; _j <= _n; _j++ )); do
                    _p=${_dir}/logdir/output.${_j}/1best_recog/${_f}
                    [ -f "${_p}" ] && cat "${_p}"
                done | sort -k1,1 > "${_dir}/${_f}.tmp"
                mv "${_dir}/${_f}.tmp" "${_dir}/${_f}"
            done
            touch "${_dir}/.done"
            log "stage 12: ${_dir}: $(wc -l < "${_dir}/text") hypotheses"
        done
    fi
fi

# ============================================================================ stage 13: scoring
# reads:  <exp>/<inference_tag>/<set>/text, dump/<feats_type>/<set>/{text,utt2spk}
# writes: <exp>/<inference_tag>/<set>/scoring/{result.txt,result.json,score_{wer,cer}/}, <exp>/RESULTS.md,
#         ./<results_file> (recipe level, default RESULTS.md: per-system tables; the comparison and its plots
#         only if the last stage 16 compared exactly these runs, scored no later than it)
# one comparison per results file, so that stage 16 of another set of systems written to another
# --results_file does not overwrite this one: RESULTS.md -> exp/compare_<tag>, RESULTS<suffix>.md ->
# exp/compare_<tag><suffix> (RESULTS_birq_family.md -> compare_<tag>_birq_family), <other>.md -> compare_<tag>_<other>
_compare_suffix=$(basename "${results_file}" .md)
if [[ "${_compare_suffix}" == RESULTS* ]]; then _compare_suffix=${_compare_suffix#RESULTS}; else _compare_suffix=_${_compare_suffix}; fi
compare_dir=${expdir}/compare_${asr_tag}${_compare_suffix}
compared_runs() {
    # the runs that stage 16 compares for the current --system/--seeds, one "<system> <exp>" line each
    local i
    for i in "${!item_exp[@]}"; do echo "${item_system[i]} ${item_exp[i]}"; done
}
compare_is_current() {
    # true if ${compare_dir} compares exactly the current runs and none was rescored after it
    # (an older stage 16 of another --system set must not be shown as this run's comparison)
    [ -f "${compare_dir}/compare.md" ] && [ -f "${compare_dir}/compared_runs" ] || return 1
    cmp -s "${compare_dir}/compared_runs" <(compared_runs) || return 1
    local e
    for e in "${item_exp[@]}"; do
        [ ! "${e}/RESULTS.md" -nt "${compare_dir}/compare.md" ] || return 1
    done
}
write_recipe_results() {
    local out=${results_file} with_compare=false
    ! compare_is_current || with_compare=true
    {
        echo "<!-- Generated by egs2/TEMPLATE/asr1/bilevel_asr.sh (stages 13 and 16); do not edit by hand. -->"
        echo "# RESULTS: $(basename "$(dirname "$(pwd)")")/$(basename "$(pwd)")"
        echo
        echo "Command (run from \`$(pwd | sed "s|^${MAIN_ROOT}/||")\`):"
        echo
        echo '```bash'
        echo "${run_cmd_line}"
        echo '```'
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(getconf _NPROCESSORS_ONLN) CPU core(s)$(${gpu_inference} && echo ', GPU decoding'), ngpu (training): ${ngpu}"
        echo "- data: train=${train_set}, unlabeled=${train_unlab_set:-none}, valid=${valid_set}, test=${test_sets}"
        echo "- token_type=${token_type}, decoding=${inference_config} (${inference_asr_model}), tag=${asr_tag}"
        echo
        if ${with_compare}; then
            cat "${compare_dir}/compare.md"
            echo
            # compare_systems plots the losses of each BL-JUST system as <system>_losses.png;
            # figure_links skips the systems without one
            figure_links "${out}" wer_by_system wer_vs_cpu_time dev_cer_vs_wall_time "${systems[@]/%/_losses}"
        fi
        local e
        for e in "${item_exp[@]}"; do
            if [ -f "${e}/RESULTS.md" ]; then
                sed 's/^#/##/' "${e}/RESULTS.md"
                echo
            fi
        done
    } > "${out}.tmp"
    mv "${out}.tmp" "${out}"
}
if run_stage 13; then
    for _i in "${!item_exp[@]}"; do
        _s=${item_system[${_i}]}; _k=${item_seed[${_i}]}; _exp=${item_exp[${_i}]}
        _pt=${pt_run_of[${_s}]:-}
        _jsons=()
        for _set in "${test_set_list[@]}"; do
            _dir=${_exp}/${inference_tag}/${_set}
            require_file "${_dir}/.done" "stage 12 (decoding)"
            if [ ! -f "${_dir}/scoring/result.json" ] || [ "${_dir}/text" -nt "${_dir}/scoring/result.json" ]; then
                run_logged "${_dir}/score.log" "${python}" -m espnet_bilevel.bin.score --ref "${data_feats}/${_set}/text" \
                    --hyp "${_dir}/text" --out_dir "${_dir}/scoring" --utt2spk "${data_feats}/${_set}/utt2spk"
            fi
            _jsons+=("${_dir}/scoring/result.json")
        done
        _scorer=python
        command -v sclite > /dev/null && _scorer=sclite
        {
            echo "# ${_s}: $(basename "${_exp}")"
            echo
            echo "- exp: \`${_exp}\`, config: \`$(config_of "${_s}")\`${_pt:+, PT config: \`$(config_of "${_pt}")\`}${_k:+, seed: ${_k}}"
            echo "- model: \`${inference_asr_model}\` exported to \`${_exp}/export\`, decoding: \`${inference_config}\` (${inference_tag})"
            echo
            "${python}" -m espnet_bilevel.bin.score --markdown "${_jsons[@]}" --metric wer --scorer "${_scorer}"
            echo
            "${python}" -m espnet_bilevel.bin.score --markdown "${_jsons[@]}" --metric cer --scorer "${_scorer}"
        } > "${_exp}/RESULTS.md.tmp"
        if cmp -s "${_exp}/RESULTS.md.tmp" "${_exp}/RESULTS.md"; then
            rm "${_exp}/RESULTS.md.tmp"  # unchanged: keep the old file (and the pack of stage 14 up to date)
        else
            mv "${_exp}/RESULTS.md.tmp" "${_exp}/RESULTS.md"
        fi
        log "stage 13: ${_exp}/RESULTS.md"
    done
    write_recipe_results
    log "stage 13: ${results_file}"
fi

# ============================================================================ stage 14: packing
# reads:  <exp>/export/{config.yaml,model.pth}, <asr_stats_dir>/train/feats_stats.npz, <exp>/RESULTS.md
# writes: <exp>/<exp name>_<model>.zip; <expdir>/logs/stage14_pack.{jobs,log} (the packs made and their log)
pack_of() { echo "$1/$(basename "$1")_$(basename "${inference_asr_model}" .pth).zip"; }  # pack_of <exp>
if run_stage 14; then
    if ${skip_packing}; then
        log "stage 14: --skip_packing true; skipped"
    else
        # every pack that is not up to date, in ONE pack_many process (espnet2.bin.pack's own code per
        # system; one torch + espnet2 import instead of one per system)
        _jobs=${logdir}/stage14_pack.jobs
        mkdir -p "${logdir}"
        : > "${_jobs}.tmp"
        for _exp in "${item_exp[@]}"; do
            _zip=$(pack_of "${_exp}")
            if [ -f "${_zip}" ] && [ "${_zip}" -nt "${_exp}/export/model.pth" ] && [ "${_zip}" -nt "${_exp}/RESULTS.md" ]; then
                log "stage 14: ${_zip} is up to date; skipped"
                continue
            fi
            require_file "${_exp}/export/model.pth" "stage 12 (export)"
            require_file "${_exp}/RESULTS.md" "stage 13 (scoring)"
            _opts=("${asr_stats_dir}/train/feats_stats.npz" "${_exp}/RESULTS.md")
            [ "${token_type}" = bpe ] && _opts+=("${bpemodel}")
            log "stage 14: packing ${_exp} -> ${_zip}"
            (IFS=$'\t'; echo "${_zip}"$'\t'"${_exp}/export/config.yaml"$'\t'"${_exp}/export/model.pth"$'\t'"${_opts[*]}") >> "${_jobs}.tmp"
        done
        mv "${_jobs}.tmp" "${_jobs}"
        if [ -s "${_jobs}" ]; then
            run_logged "${logdir}/stage14_pack.log" "${python}" -m espnet_bilevel.bin.pack_many --jobs "${_jobs}"
        fi
    fi
fi

# ============================================================================ stage 15: Hugging Face upload
# reads:  the pack of stage 14, <exp>/config.yaml, <exp>/steps/*.jsonl, <exp>/RESULTS.md
# writes: huggingface.co/<hf_repo> (needs huggingface_hub + network + a token), or with --hf_dry_run
#         true: <exp>/hf_upload/ = exactly the files that would be uploaded (README.md model card + pack)
if run_stage 15; then
    if ${skip_upload_hf}; then
        log "stage 15: --skip_upload_hf true; skipped"
    else
        if ! ${hf_dry_run} && [ -z "${hf_repo}" ]; then
            die "stage 15: --hf_repo is required for an upload (or use --hf_dry_run true)"
        fi
        for _i in "${!item_exp[@]}"; do
            _s=${item_system[${_i}]}; _k=${item_seed[${_i}]}; _exp=${item_exp[${_i}]}
            _zip=$(pack_of "${_exp}")
            require_file "${_zip}" "stage 14 (packing)"
            if [ -z "${hf_repo}" ]; then _repo=your-name/$(basename "${_exp}")
            else
                _repo=${hf_repo}
                [ "${#systems[@]}" -eq 1 ] || _repo+=_${_s}
                [ -z "${_k}" ] || _repo+=_seed${_k}
            fi
            _pt_opts=()
            [ -z "${pt_run_of[${_s}]:-}" ] || _pt_opts=(--pt_exp "$(exp_of "${pt_run_of[${_s}]}" "${_k}")")
            _dry=()
            ${hf_dry_run} && _dry=(--dry_run)
            log "stage 15: $(${hf_dry_run} && echo 'dry run for' || echo 'uploading') ${_repo} from ${_zip}"
            run_logged "${_exp}/hf_upload.log" "${python}" -m espnet_bilevel.bin.hf_upload \
                --exp "${_exp}" --system "${_s}" --pack "${_zip}" --repo "${_repo}" \
                --out_dir "${_exp}/hf_upload" --train_set "${train_set}" --unlab_set "${train_unlab_set}" \
                --valid_set "${valid_set}" --dump_dir "${data_feats}" --recipe "$(basename "$(dirname "$(pwd)")")" \
                --command "${run_cmd_line}" "${_pt_opts[@]}" "${_dry[@]}"
        done
    fi
fi

# ============================================================================ stage 16: compare systems
# reads:  each system's RESULTS inputs (scoring/result.json), train_{wall,cpu}_seconds, export/model.pth,
#         checkpoint.pth (per-epoch dev CER and time), steps/*.jsonl (BL-JUST f, g, gamma);
#         with --seeds every seed's exp dir (the table shows mean ± std over the seeds)
# writes: exp/compare_<tag>[<suffix>]/{compare.md (with --seeds also the paired-by-seed table),compare.json,
#         paired.json (--seeds),compared_runs,wer_by_system.png,wer_vs_cpu_time.png,
#         dev_cer_vs_wall_time.png,<bljust system>_losses.png} (one dir per results file, see compare_dir),
#         ./<results_file> with the plots embedded from a copy in ./<results_file stem>_figures/
if run_stage 16; then
    if ${skip_compare}; then
        log "stage 16: --skip_compare true; skipped"
    else
        # one --system NAME=EXP[,EXP...] per system (one dir per seed); PT+FT systems name their PT
        # runs with --pre_exp so that the wall time is PT + FT
        # (built from the same (system, seed) items as compared_runs, which stage 13 checks against)
        declare -A _exps_of=() _pres_of=()
        for _i in "${!item_exp[@]}"; do
            _s=${item_system[_i]}
            require_file "${item_exp[_i]}/RESULTS.md" "stage 13 (scoring)"
            _exps_of[${_s}]+="${_exps_of[${_s}]:+,}${item_exp[_i]}"
            [ -z "${pt_run_of[${_s}]:-}" ] \
                || _pres_of[${_s}]+="${_pres_of[${_s}]:+,}$(exp_of "${pt_run_of[${_s}]}" "${item_seed[_i]}")"
        done
        _cargs=()
        for _s in "${systems[@]}"; do
            _cargs+=(--system "${_s}=${_exps_of[${_s}]}")
            [ -z "${_pres_of[${_s}]:-}" ] || _cargs+=(--pre_exp "${_s}=${_pres_of[${_s}]}")
        done
        log "stage 16: comparing ${systems[*]} -> ${compare_dir}"
        run_logged "${logdir}/stage16_compare.log" "${python}" -m espnet_bilevel.bin.compare_systems \
            "${_cargs[@]}" --decode_dir "${inference_tag}" --test_sets "${test_set_list[@]}" \
            --valid_set "${valid_set}" --out_dir "${compare_dir}"
        compared_runs > "${compare_dir}/compared_runs.tmp"
        mv "${compare_dir}/compared_runs.tmp" "${compare_dir}/compared_runs"
        # the plots go next to the results file (exp/ is not versioned): <stem>_figures/
        publish_figures "${results_file}" "${compare_dir}"/*.png
        write_recipe_results
        log "stage 16: ./${results_file} updated with the comparison"
    fi
fi

log "finished stages ${stage}-${stop_stage}"
