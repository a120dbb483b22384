"""CTC best-path decoding: the collapse rule, the decoder on an exported model (against the model's
own CTC argmax, and on models whose output is forced), ESPnet's output layout, and decode_many's
selection of it by the ctc_best_path config with its errors."""
from pathlib import Path

import pytest
import torch

from espnet_bilevel.decoding.ctc_best_path import best_path_ids
from espnet_bilevel.testing.task_helpers import train_cmd, write_config

REPO = Path(__file__).resolve().parents[2]
BEST_PATH_CONF = REPO / "conf" / "decode_ctc_bestpath.yaml"


def test_best_path_collapses_runs_then_drops_blanks():
    assert best_path_ids([0, 3, 3, 0, 3, 5, 5, 5, 0], drop={0}) == [3, 3, 5]  # a blank separates repeats
    assert best_path_ids([4, 4, 4], drop={0}) == [4]
    assert best_path_ids([0, 0, 9, 0], drop={0, 9}) == []  # sos/eos are dropped like the blank
    assert best_path_ids([], drop={0}) == []


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_corpus, tiny_stats):
    from espnet_bilevel.bin.bilevel_export import export
    from espnet_bilevel.tasks.bilevel_asr import BilevelASRTask

    root = tmp_path_factory.mktemp("bestpath")
    cfg = write_config(root / "supervised.yaml", solver="supervised", solver_conf={}, ssl_loss=None, max_epoch=2)
    exp = root / "exp"
    BilevelASRTask.main(cmd=train_cmd(tiny_corpus, tiny_stats, exp, cfg))
    return export(exp / "config.yaml", exp / "valid.cer_ctc.ave.pth", root / "export")


def _read(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def test_decoder_follows_the_model_argmax_and_writes_asr_inference_files(exported, tiny_corpus, tmp_path):
    import soundfile
    from espnet2.bin.asr_inference import main as asr_inference_main
    from espnet2.tasks.asr import ASRTask

    from espnet_bilevel.decoding.ctc_best_path import CTCBestPathDecoder, decode_to_dir

    dev = Path(tiny_corpus["dev"])
    decoder = CTCBestPathDecoder.from_files(exported / "config.yaml", exported / "model.pth")
    n = decode_to_dir(decoder, dev / "wav.scp", "sound", dev / "wav.scp", tmp_path / "bp")
    wav = _read(dev / "wav.scp")
    assert n == len(wav)

    # ESPnet's own beam search on the same data: the same files and keys
    conf = tmp_path / "beam1.yaml"
    conf.write_text("beam_size: 1\nctc_weight: 1.0\nlm_weight: 0.0\n")
    asr_inference_main(cmd=[
        "--ngpu", "0", "--batch_size", "1", "--output_dir", str(tmp_path / "espnet"),
        "--data_path_and_name_and_type", f"{dev}/wav.scp,speech,sound", "--key_file", f"{dev}/wav.scp",
        "--config", str(conf), "--asr_train_config", str(exported / "config.yaml"),
        "--asr_model_file", str(exported / "model.pth"),
    ])
    files = ("text", "token", "token_int", "score")
    for f in files:
        assert set(_read(tmp_path / "bp" / "1best_recog" / f)) == set(wav), f
        assert (tmp_path / "espnet" / "1best_recog" / f).is_file()

    # each hypothesis is the collapsed argmax of the stock model's CTC posteriors, read independently
    model, args = ASRTask.build_model_from_file(exported / "config.yaml", exported / "model.pth", "cpu")
    model.eval()
    token_list = args.token_list
    token_int, tokens, texts = (_read(tmp_path / "bp" / "1best_recog" / f) for f in ("token_int", "token", "text"))
    scores = _read(tmp_path / "bp" / "1best_recog" / "score")
    for key, path in wav.items():
        x, _ = soundfile.read(path, dtype="float32")
        speech = torch.from_numpy(x)[None]
        with torch.no_grad():
            enc, lens = model.encode(speech, torch.tensor([speech.shape[1]]))
            logp = model.ctc.log_softmax(enc)[0, : lens[0]]
        frames = logp.argmax(-1).tolist()
        want = []
        for i, t in enumerate(frames):
            if t != 0 and (i == 0 or frames[i - 1] != t):
                want.append(t)
        assert [int(t) for t in token_int[key].split()] == want, key
        assert tokens[key].split() == [token_list[t] for t in want]
        assert texts[key] == "".join(" " if token_list[t] == "<space>" else token_list[t] for t in want)
        assert float(scores[key]) == pytest.approx(float(logp.max(-1).values.sum()), rel=1e-5)


def test_forced_outputs(exported, tiny_corpus):
    """With the CTC layer made to prefer one token everywhere, the text is that one token; with the
    blank preferred everywhere it is empty."""
    import soundfile

    from espnet_bilevel.decoding.ctc_best_path import CTCBestPathDecoder

    decoder = CTCBestPathDecoder.from_files(exported / "config.yaml", exported / "model.pth")
    token_list = decoder.speech2text.asr_model.token_list
    letter = token_list.index("C")
    x, _ = soundfile.read(next(iter(_read(Path(tiny_corpus["dev"]) / "wav.scp").values())), dtype="float32")
    lo = decoder.model.ctc.ctc_lo
    with torch.no_grad():
        lo.weight.zero_()
        lo.bias.fill_(-5.0)
        lo.bias[letter] = 5.0
    text, tokens, token_int, score = decoder(torch.from_numpy(x))
    assert (text, tokens, token_int) == ("C", ["C"], [letter])
    assert score < 0
    with torch.no_grad():
        lo.bias[letter] = -5.0
        lo.bias[decoder.model.blank_id] = 5.0
    text, tokens, token_int, _ = decoder(torch.from_numpy(x))
    assert (text, tokens, token_int) == ("", [], [])


def test_decode_many_selects_best_path_by_config_and_rejects_what_it_would_ignore(exported, tiny_corpus,
                                                                                   tmp_path, capsys):
    from espnet_bilevel.bin import decode_many

    dev = Path(tiny_corpus["dev"])
    out = tmp_path / "dec" / "output.1"
    jobs = tmp_path / "jobs.tsv"
    jobs.write_text("\t".join([str(out), str(exported / "config.yaml"), str(exported / "model.pth"),
                               str(dev / "wav.scp"), str(dev / "wav.scp")]) + "\n")
    rc = decode_many.main(["--jobs", str(jobs), "--", "--config", str(BEST_PATH_CONF), "--ngpu", "0",
                           "--batch_size", "1"])
    assert rc == 0
    assert set(_read(out / "1best_recog" / "text")) == set(_read(dev / "wav.scp"))
    assert not Path(str(out) + ".tmp").exists()

    for extra, message in (
        (["--beam_size", "4"], "does not use ['--beam_size']"),
        (["--lm_train_config", "lm.yaml"], "does not use ['--lm_train_config']"),
    ):
        with pytest.raises(SystemExit, match=message.replace("[", r"\[").replace("]", r"\]")):
            decode_many.main(["--jobs", str(jobs), "--", "--config", str(BEST_PATH_CONF), "--ngpu", "0",
                              "--batch_size", "1", *extra])
    with pytest.raises(SystemExit, match="--batch_size must be 1"):
        decode_many.main(["--jobs", str(jobs), "--", "--config", str(BEST_PATH_CONF), "--batch_size", "8"])
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("ctc_best_path: true\nbeam_size: 10\n")
    with pytest.raises(SystemExit, match=r"mixed.yaml: a ctc_best_path config takes no other keys, got \['beam_size'\]"):
        decode_many.main(["--jobs", str(jobs), "--", "--config", str(mixed)])
