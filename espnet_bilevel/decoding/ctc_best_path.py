"""CTC best-path decoding ("greedy" in the usual sense) of an ESPnet ASR model.

Usage (what ``espnet_bilevel.bin.decode_many`` does when its ``--config`` says ``ctc_best_path: true``):

    decoder = CTCBestPathDecoder.from_files("exp/x/export/config.yaml", "exp/x/export/model.pth")
    text, tokens, token_int, score = decoder(speech)          # speech: 1-D float waveform / features
    decode_to_dir(decoder, "dump/raw/test/wav.scp", "sound", key_file, "exp/x/decode/test/logdir/output.1")

Best path = argmax of the CTC posteriors per encoder frame, repeats collapsed, blanks dropped. It
is not what ESPnet 202511 calls greedy: ``asr_inference`` with ``beam_size: 1`` runs its prefix
beam search with one hypothesis, which scores the CTC prefix probability of every vocabulary entry
over all frames once per output token (bench/decode_rtf.py: 8-14x slower on the mini models). The two
can differ on an utterance (the prefix search sums over alignments, best path follows one); their
mean test WERs per system differ by -2.2 to +1.3 points on the mini_synth models (README.md, Benchmarks).

Everything but the search is ESPnet's own, so that the outputs are interchangeable with
``asr_inference``'s: the model, its token list and text converter come from ``Speech2Text``, the data
from ``ASRTask.build_streaming_iterator`` with the model's preprocessing, the outputs go to
``<output_dir>/1best_recog/{text,token,token_int,score}`` in ESPnet's format. ``score`` is the log
probability of the best path (ESPnet writes the prefix-search score there). Utterances one at a time:
a padded batch changes the encoder output of the shorter utterances (conv2d subsampling lengths,
unmasked conformer convolution), so batching would change the hypotheses.
"""
from __future__ import annotations

from itertools import groupby
from pathlib import Path
from typing import Collection, List, Sequence, Tuple, Union

Hypothesis = Tuple[str, List[str], List[int], float]


def best_path_ids(frame_ids: Sequence[int], drop: Collection[int]) -> List[int]:
    """Collapse runs of equal frame labels, then remove the ``drop`` ids (blank, sos/eos)."""
    return [int(i) for i, _ in groupby(frame_ids) if int(i) not in drop]


class CTCBestPathDecoder:
    """Best-path decoding with the model, token list and tokenizer of an ESPnet ``Speech2Text``."""

    def __init__(self, speech2text):
        model = speech2text.asr_model
        if getattr(model, "ctc", None) is None:
            raise ValueError("CTC best-path decoding needs a model with a CTC branch (ctc_weight > 0 in training)")
        self.speech2text = speech2text
        self.model = model
        self.device = speech2text.device
        self.drop = {model.blank_id, model.sos, model.eos}

    @classmethod
    def from_files(cls, asr_train_config: Union[str, Path], asr_model_file: Union[str, Path],
                   device: str = "cpu") -> "CTCBestPathDecoder":
        from espnet2.bin.asr_inference import Speech2Text

        # beam 1, CTC only: the cheapest search to build; it is never run
        s2t = Speech2Text(asr_train_config=str(asr_train_config), asr_model_file=str(asr_model_file),
                          device=device, beam_size=1, ctc_weight=1.0, lm_weight=0.0, nbest=1)
        return cls(s2t)

    def __call__(self, speech) -> Hypothesis:
        """(text, tokens, token ids, log probability of the path) of one utterance."""
        import torch

        if not isinstance(speech, torch.Tensor):
            speech = torch.as_tensor(speech)
        speech = speech.unsqueeze(0).to(dtype=torch.float32, device=self.device)
        lengths = speech.new_full([1], speech.size(1), dtype=torch.long)
        with torch.no_grad():
            enc, enc_lens = self.model.encode(speech, lengths)
            if isinstance(enc, tuple):  # intermediate CTC outputs
                enc = enc[0]
            logp = self.model.ctc.log_softmax(enc)[0, : int(enc_lens[0])]
            best, frame_ids = logp.max(dim=-1)
        token_int = best_path_ids(frame_ids.tolist(), self.drop)
        tokens = self.speech2text.converter.ids2tokens(token_int)
        tokenizer = self.speech2text.tokenizer
        text = tokenizer.tokens2text(tokens) if tokenizer is not None else None
        return text, tokens, token_int, float(best.sum())


def decode_to_dir(decoder: CTCBestPathDecoder, data_path: Union[str, Path], data_type: str,
                  key_file: Union[str, Path, None], output_dir: Union[str, Path]) -> int:
    """Decode every utterance of ``data_path`` (restricted to ``key_file``) into ``output_dir`` as
    ``asr_inference`` lays it out; returns the number of utterances."""
    from espnet2.fileio.datadir_writer import DatadirWriter
    from espnet2.tasks.asr import ASRTask
    from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError

    args = decoder.speech2text.asr_train_args
    loader = ASRTask.build_streaming_iterator(
        [(str(data_path), "speech", data_type)], dtype="float32", batch_size=1,
        key_file=None if key_file is None else str(key_file), num_workers=0,
        preprocess_fn=ASRTask.build_preprocess_fn(args, False), collate_fn=ASRTask.build_collate_fn(args, False),
        allow_variable_data_keys=False, inference=True,
    )
    n = 0
    with DatadirWriter(Path(output_dir)) as writer:
        best = writer["1best_recog"]
        for keys, batch in loader:
            try:
                text, tokens, token_int, score = decoder(batch["speech"][0])
            except TooShortUttError:
                # as asr_inference: an utterance too short for the subsampling decodes to a space
                text, tokens, token_int, score = " ", ["<space>"], [2], 0.0
            key = keys[0]
            best["token"][key] = " ".join(tokens)
            best["token_int"][key] = " ".join(map(str, token_int))
            best["score"][key] = str(score)
            if text is not None:
                best["text"][key] = text
            n += 1
    return n
