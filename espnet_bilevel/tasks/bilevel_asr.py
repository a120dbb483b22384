"""BilevelASRTask: ESPnet's ASR task with an unlabeled stream, an SSL head and a bilevel solver.

Everything ``espnet2.bin.asr_train`` accepts works unchanged (``--config``, ``--print_config``,
data triples, shape files, ``--ngpu``, the distributed flags, ``--resume``, ``--init_param``, ...).
Added on top:

* ``--ssl_loss {cpc,w2v2,...}`` / ``--ssl_loss_conf``  the lower-level loss g and its head η;
* ``--solver {bljust,weighted_sum,alternating,supervised,pretrain}`` / ``--solver_conf``;
* the unlabeled stream: ``--train_unlab_data_path_and_name_and_type <scp>,speech,sound``,
  ``--train_unlab_shape_file``, ``--unlab_batch_size``, ``--unlab_batch_bins``,
  ``--unlab_batch_type``, ``--unlab_fold_length`` (defaults: the labeled stream's values);
* two optimizers: ``--optim``/``--scheduler`` (index 0) drive joint and supervised steps over
  all parameters; ``--optim2``/``--scheduler2`` (index 1) drive SSL-only steps over θ and η.

With ``--collect_stats true`` the unlabeled stream gets its statistics too, written to
``<output_dir>/unlab/train/`` (``speech_shape``, ``feats_stats.npz``); text is not needed there.
"""
import argparse
import copy
import inspect
import logging
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
from espnet2.asr.ctc import CTC
from espnet2.main_funcs.collect_stats import collect_stats
from espnet2.tasks.abs_task import optim_classes
from espnet2.tasks.asr import ASRTask
from espnet2.train.class_choices import ClassChoices
from espnet2.train.distributed_utils import DistributedOption
from espnet2.utils.types import int_or_none, str2triple_str, str_or_none

from espnet_bilevel.iterators.bilevel_iter_factory import BilevelIterFactory
from espnet_bilevel.losses import ssl_loss_choices
from espnet_bilevel.models.bilevel_asr_model import BilevelASRModel
from espnet_bilevel.solvers.bilevel_solvers import SOLVERS, AbsSolver
from espnet_bilevel.trainers.bilevel_trainer import BilevelTrainer

solver_choices = ClassChoices(
    "solver",
    classes=SOLVERS,
    type_check=AbsSolver,
    default="bljust",
)


class BilevelConfigError(ValueError):
    """A configuration or input problem found before training starts (one clear message)."""


def accepted_conf_keys(cls: type) -> Optional[List[str]]:
    """The keyword arguments ``cls(**conf)`` accepts, or None if that cannot be known.

    A constructor with ``**kwargs`` usually forwards them to its base class, so the bases' named
    parameters count too (walking the MRO); only a chain of ``**kwargs`` that reaches a constructor
    taking anything (e.g. ``torch.nn.Module``'s) makes the keys unknowable.
    """
    keys: List[str] = []
    for klass in cls.__mro__:
        if klass is object:
            break
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        for p in params:
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in keys:
                keys.append(p.name)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return keys
    return None


def _check_conf_keys(kind: str, name: str, cls: type, conf: dict, reserved=()) -> None:
    """Unknown keys in a ``*_conf`` dict are an error that names the key and the valid ones."""
    accepted = accepted_conf_keys(cls)
    if accepted is None:
        return
    valid = [k for k in accepted if k not in reserved]
    for key in conf or {}:
        if key not in valid:
            raise BilevelConfigError(
                f"{kind}_conf: unknown key {key!r} for {kind} {name!r}; valid keys: {valid}"
            )


class BilevelASRTask(ASRTask):
    num_optimizers = 2
    class_choices_list = ASRTask.class_choices_list + [ssl_loss_choices, solver_choices]
    trainer = BilevelTrainer

    # ------------------------------------------------------------------ arguments
    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="Bilevel (unlabeled stream) related")
        group.add_argument(
            "--train_unlab_data_path_and_name_and_type",
            type=str2triple_str,
            action="append",
            default=[],
            help="Unlabeled training audio, e.g. dump/raw/train_unlab/wav.scp,speech,sound",
        )
        group.add_argument(
            "--train_unlab_shape_file",
            type=str,
            action="append",
            default=[],
            help="Shape file of the unlabeled audio (from --collect_stats: <dir>/unlab/train/speech_shape)",
        )
        group.add_argument("--unlab_batch_size", type=int_or_none, default=None,
                           help="Batch size of the unlabeled stream (default: --batch_size)")
        group.add_argument("--unlab_batch_bins", type=int_or_none, default=None,
                           help="Batch bins of the unlabeled stream (default: --batch_bins)")
        group.add_argument("--unlab_batch_type", type=str_or_none, default=None,
                           help="Batch type of the unlabeled stream (default: --batch_type)")
        group.add_argument("--unlab_fold_length", type=int_or_none, default=None,
                           help="Fold length of the unlabeled stream (default: first --fold_length)")

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        # text is required for the labeled stream only; that check is done per stream in
        # build_iter_factory, so the unlabeled stream and its collect_stats can omit it.
        return ("speech",)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("text",) + tuple(super().optional_data_names(train, inference))

    # ------------------------------------------------------------------ checks
    @classmethod
    def build_solver(cls, args: argparse.Namespace) -> AbsSolver:
        try:
            solver_class = solver_choices.get_class(args.solver)
        except ValueError as e:  # an unknown name from YAML (the CLI checks choices itself)
            raise BilevelConfigError(str(e)) from None
        conf = dict(args.solver_conf or {})
        _check_conf_keys("solver", args.solver, solver_class, conf)
        try:
            return solver_class(**conf)
        except ValueError as e:
            raise BilevelConfigError(f"solver {args.solver!r}: {e}") from None

    @classmethod
    def check_bilevel_args(cls, args: argparse.Namespace) -> None:
        """Everything that can be checked before the model is built and any file is written."""
        if args.solver is None:
            raise BilevelConfigError(f"--solver must be one of {sorted(SOLVERS)}")
        solver = cls.build_solver(args)
        try:  # options that depend on max_epoch (e.g. finetune_epochs) are checked here too
            solver.configure(max_epoch=args.max_epoch, n_labeled=1, n_unlabeled=1)
        except ValueError as e:
            raise BilevelConfigError(f"solver {args.solver!r}: {e}") from None
        if args.ssl_loss is not None:
            try:
                ssl_class = ssl_loss_choices.get_class(args.ssl_loss)
            except ValueError as e:
                raise BilevelConfigError(str(e)) from None
            _check_conf_keys(
                "ssl_loss", args.ssl_loss, ssl_class,
                args.ssl_loss_conf, reserved=("input_size", "encoder_output_size"),
            )
        elif solver.uses_unlabeled and not args.collect_stats:
            raise BilevelConfigError(
                f"solver {args.solver!r} trains the SSL level but --ssl_loss is null"
            )
        if args.iterator_type != "sequence":
            raise BilevelConfigError("the bilevel task supports --iterator_type sequence only")
        if getattr(args, "use_deepspeed", False) or args.sharded_ddp:
            raise BilevelConfigError(
                "--use_deepspeed / --sharded_ddp are not supported by the bilevel trainer"
            )

        def _exists(path: str, what: str):
            if path is not None and not Path(path).exists():
                raise BilevelConfigError(f"{what}: file not found: {path}")

        for opt in ("train_data_path_and_name_and_type", "valid_data_path_and_name_and_type",
                    "train_unlab_data_path_and_name_and_type"):
            for triple in getattr(args, opt, []) or []:
                _exists(triple[0], f"--{opt}")
        for opt in ("train_shape_file", "valid_shape_file", "train_unlab_shape_file"):
            for path in getattr(args, opt, []) or []:
                _exists(path, f"--{opt}")
        stats_file = (args.normalize_conf or {}).get("stats_file")
        if args.normalize == "global_mvn" and not args.collect_stats:
            if stats_file is None:
                raise BilevelConfigError("--normalize global_mvn needs normalize_conf.stats_file")
            _exists(stats_file, "normalize_conf.stats_file")
        if isinstance(args.token_list, str):
            _exists(args.token_list, "--token_list")

        cls.check_data_files(args)

        if not args.collect_stats and solver.uses_unlabeled:
            if not args.train_unlab_data_path_and_name_and_type:
                raise BilevelConfigError(
                    f"solver {args.solver!r} needs unlabeled audio: give "
                    "--train_unlab_data_path_and_name_and_type <wav.scp>,speech,sound"
                )
            if not args.train_unlab_shape_file:
                raise BilevelConfigError(
                    "--train_unlab_shape_file is required for the unlabeled stream "
                    "(run --collect_stats first: it writes <output_dir>/unlab/train/speech_shape)"
                )
            for triple in args.train_unlab_data_path_and_name_and_type:
                if triple[1] != "speech":
                    raise BilevelConfigError(
                        "--train_unlab_data_path_and_name_and_type: the data name must be "
                        f"'speech' (got {triple[1]!r} for {triple[0]})"
                    )

    @classmethod
    def check_data_files(cls, args: argparse.Namespace) -> None:
        """Cheap whole-corpus checks of the data triples, so that a bad corpus fails now with
        the file and utterance named, not hours into training: duplicated ids, audio paths
        that do not exist, empty transcripts, and ids that differ between a stream's files.
        (Reading every audio file is the recipe's validation stage: validate_data_dir.)"""
        from espnet_bilevel.data.kaldi_dir import DataError, compare_ids, id_examples, read_table

        streams = (
            ("--train_data_path_and_name_and_type", args.train_data_path_and_name_and_type),
            ("--valid_data_path_and_name_and_type", args.valid_data_path_and_name_and_type),
            ("--train_unlab_data_path_and_name_and_type",
             args.train_unlab_data_path_and_name_and_type),
        )
        try:
            for option, triples in streams:
                ids = {}
                for path, name, dtype in triples or []:
                    if dtype not in ("sound", "text"):
                        continue  # other types (kaldi_ark, npy, ...) are read by ESPnet as is
                    table = read_table(path)
                    if not table:
                        raise DataError(f"{path} ({option}): no entries")
                    if dtype == "sound":
                        missing = [k for k, v in table.items()
                                   if not v.rstrip().endswith("|") and not Path(v).exists()]
                        if missing:
                            raise DataError(
                                f"{path} ({option}): {len(missing)} audio file(s) not found, "
                                f"e.g. {missing[0]} -> {table[missing[0]]}"
                            )
                    else:
                        empty = [k for k, v in table.items() if not v.strip()]
                        if empty:
                            raise DataError(
                                f"{path} ({option}): {len(empty)} empty transcript(s): "
                                f"{id_examples(empty)}"
                            )
                    ids[path] = table.keys()
                paths = list(ids)
                for other in paths[1:]:
                    compare_ids(Path(paths[0]).name, ids[paths[0]], Path(other).name,
                                 ids[other], Path(f"{option} {paths[0]} vs {other}"))
        except DataError as e:
            raise BilevelConfigError(str(e)) from None

    # ------------------------------------------------------------------ model / optimizers
    @classmethod
    def build_model(cls, args: argparse.Namespace) -> BilevelASRModel:
        if getattr(args, "model", "espnet") not in (None, "espnet"):
            raise BilevelConfigError(
                f"--model {args.model!r} is not supported; the bilevel task extends 'espnet'"
            )
        args.model = "espnet"
        # Build the stock ESPnet model first (so every ESPnet option is validated and built
        # exactly as asr_train would), then move its components into our subclass.
        asr = ASRTask.build_model(args)
        ssl_loss = None
        if args.ssl_loss is not None:
            if asr.preencoder is not None:
                ssl_input_size = asr.preencoder.output_size()
            elif asr.frontend is not None:
                ssl_input_size = asr.frontend.output_size()
            else:
                ssl_input_size = args.input_size
            ssl_class = ssl_loss_choices.get_class(args.ssl_loss)
            ssl_loss = ssl_class(
                input_size=ssl_input_size,
                encoder_output_size=asr.encoder.output_size(),
                **(args.ssl_loss_conf or {}),
            )
        model = BilevelASRModel(
            ssl_loss=ssl_loss,
            input_size=args.input_size,
            vocab_size=asr.vocab_size,
            token_list=asr.token_list,
            frontend=asr.frontend,
            specaug=asr.specaug,
            normalize=asr.normalize,
            preencoder=asr.preencoder,
            encoder=asr.encoder,
            postencoder=asr.postencoder,
            decoder=getattr(asr, "decoder", None),
            ctc=asr.ctc if asr.ctc is not None else CTC(
                odim=asr.vocab_size,
                encoder_output_size=asr.encoder.output_size(),
                **args.ctc_conf,
            ),
            joint_network=getattr(asr, "joint_network", None),
            **args.model_conf,
        )
        return model

    @classmethod
    def build_optimizers(
        cls, args: argparse.Namespace, model: torch.nn.Module
    ) -> List[torch.optim.Optimizer]:
        """optim (index 0): joint/supervised steps, all parameters (θ, φ, η).
        optim2 (index 1): SSL-only steps, θ and η.

        Gradients are zeroed with set_to_none after every step, so a parameter that a step does
        not reach keeps grad None and is skipped by the optimizer (no stray weight decay).
        """
        groups = model.parameter_groups()
        all_params = [p for _, p in model.named_parameters()]
        lower_params = [p for _, p in groups["theta"]] + [p for _, p in groups["eta"]]
        optimizers = []
        for name, conf, params in (
            (args.optim, args.optim_conf, all_params),
            (args.optim2, args.optim2_conf, lower_params),
        ):
            optim_class = optim_classes.get(name)
            if optim_class is None:
                raise BilevelConfigError(f"unknown optimizer {name!r}; one of {list(optim_classes)}")
            optimizers.append(optim_class(params, **conf))
        return optimizers

    # ------------------------------------------------------------------ data streams
    @classmethod
    def _unlabeled_args(cls, args: argparse.Namespace) -> argparse.Namespace:
        u = copy.copy(args)
        u.train_data_path_and_name_and_type = list(args.train_unlab_data_path_and_name_and_type)
        u.train_shape_file = list(args.train_unlab_shape_file)
        u.batch_size = args.unlab_batch_size or args.batch_size
        u.batch_bins = args.unlab_batch_bins or args.batch_bins
        u.batch_type = args.unlab_batch_type or args.batch_type
        fold = args.unlab_fold_length or (args.fold_length[0] if args.fold_length else None)
        u.fold_length = [fold] if fold is not None else []
        u.num_iters_per_epoch = None
        return u

    @classmethod
    def _check_labeled_text(cls, triples, option: str) -> None:
        if not any(name == "text" for _, name, _ in triples):
            raise BilevelConfigError(
                f"{option} needs a text triple (e.g. data/train/text,text,text) for the "
                "labeled stream"
            )

    @classmethod
    def build_iter_factory(
        cls,
        args: argparse.Namespace,
        distributed_option: DistributedOption,
        mode: str,
        kwargs: Optional[dict] = None,
    ):
        if mode == "valid":
            cls._check_labeled_text(
                args.valid_data_path_and_name_and_type, "--valid_data_path_and_name_and_type"
            )
        if mode != "train":
            return super().build_iter_factory(args, distributed_option, mode, kwargs)

        solver = cls.build_solver(args)
        labeled = unlabeled = None
        if solver.uses_labeled:
            cls._check_labeled_text(
                args.train_data_path_and_name_and_type, "--train_data_path_and_name_and_type"
            )
            labeled = super().build_iter_factory(args, distributed_option, mode, kwargs)
        if solver.uses_unlabeled:
            unlabeled = super().build_iter_factory(
                cls._unlabeled_args(args), distributed_option, mode, kwargs
            )
        try:
            return BilevelIterFactory(
                solver=solver,
                labeled=labeled,
                unlabeled=unlabeled,
                max_epoch=args.max_epoch,
                accum_grad=args.accum_grad,
                labeled_iters_per_epoch=args.num_iters_per_epoch,
            )
        except ValueError as e:
            raise BilevelConfigError(str(e)) from None

    # ------------------------------------------------------------------ entry
    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        cls.check_bilevel_args(args)
        if getattr(args, "distributed", False) and not args.unused_parameters:
            # SSL-only and supervised-only steps leave φ or η without gradients; DDP must know.
            logging.info("bilevel: setting --unused_parameters true (needed under DDP)")
            args.unused_parameters = True
        super().main_worker(args)
        if args.collect_stats and args.train_unlab_data_path_and_name_and_type and not args.dry_run:
            cls._collect_unlabeled_stats(args)

    @classmethod
    def _collect_unlabeled_stats(cls, args: argparse.Namespace) -> None:
        """Shapes and feature statistics of the unlabeled audio, in <output_dir>/unlab/."""
        u = cls._unlabeled_args(args)
        model = cls.build_model(args=copy.deepcopy(args))
        key_file = u.train_shape_file[0] if u.train_shape_file else None

        def streaming(triples, key, mode):
            return cls.build_streaming_iterator(
                data_path_and_name_and_type=triples,
                key_file=key,
                batch_size=args.batch_size,
                dtype=args.train_dtype,
                num_workers=args.num_workers,
                allow_variable_data_keys=args.allow_variable_data_keys,
                ngpu=args.ngpu,
                preprocess_fn=cls.build_preprocess_fn(args, train=False),
                collate_fn=cls.build_collate_fn(args, train=False),
                mode=mode,
            )

        valid_key = args.valid_shape_file[0] if args.valid_shape_file else None
        collect_stats(
            model=model,
            train_iter=streaming(u.train_data_path_and_name_and_type, key_file, "train"),
            # ESPnet's collect_stats needs a non-empty valid pass; the labeled dev set is small.
            valid_iter=streaming(
                [t for t in args.valid_data_path_and_name_and_type if t[1] == "speech"],
                valid_key,
                "valid",
            ),
            output_dir=Path(args.output_dir) / "unlab",
            ngpu=args.ngpu,
            log_interval=args.log_interval,
            write_collected_feats=False,
        )
        logging.info(f"unlabeled statistics written to {Path(args.output_dir) / 'unlab'}")
