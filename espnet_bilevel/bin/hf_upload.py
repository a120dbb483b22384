#!/usr/bin/env python3
"""Upload a packed espnet-bilevel model with a generated model card to the Hugging Face hub.

Usage (bilevel_asr.sh stage 15):
  python -m espnet_bilevel.bin.hf_upload --exp exp/asr_bljust_raw_char --system bljust \\
      --pack exp/asr_bljust_raw_char/asr_bljust_raw_char_valid.cer_ctc.ave.zip --repo user/bljust_mini \\
      --out_dir exp/asr_bljust_raw_char/hf_upload [--dry_run] [model card options, see make_model_card]

Stages exactly the files to upload in --out_dir: README.md (model card) plus the unzipped pack
(meta.yaml, config, model, feats_stats.npz, RESULTS.md, ...). With --dry_run nothing else happens
(huggingface_hub is not needed). Otherwise the folder is uploaded with huggingface_hub
(``create_repo(exist_ok=True)`` + ``upload_folder``); that needs the package, network access to
huggingface.co and a token (``huggingface-cli login`` or HF_TOKEN). Any of these missing is
reported as one "ERROR: ..." line, exit status 1.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import sys
import zipfile
from pathlib import Path
from typing import List, Optional

from espnet_bilevel.bin.make_model_card import SYSTEM_TEXT, add_card_arguments, build_card


class UploadError(Exception):
    pass


def stage_files(pack: Path, card: str, out_dir: Path) -> List[str]:
    if not pack.is_file():
        raise UploadError(f"{pack}: pack not found (run stage 14 first)")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        with zipfile.ZipFile(pack) as z:
            for name in z.namelist():
                target = (tmp / name).resolve()
                if not str(target).startswith(str(tmp.resolve())):
                    raise UploadError(f"{pack}: unsafe path in archive: {name}")
            z.extractall(tmp)
    except zipfile.BadZipFile as e:
        raise UploadError(f"{pack}: not a valid zip file ({e})")
    (tmp / "README.md").write_text(card, encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())


def check_network(host: str = "huggingface.co", port: int = 443, timeout: float = 5.0) -> None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise UploadError(
            f"cannot reach {host}:{port} ({e}); no network? Stage 15 needs internet access. "
            "Use --hf_dry_run true to only stage the files, or --skip_upload_hf true to skip the stage"
        )


def upload(folder: Path, repo: str) -> str:
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise UploadError("huggingface_hub is not installed: pip install huggingface_hub (or use --hf_dry_run true)")
    check_network()
    api = HfApi()
    try:
        api.create_repo(repo_id=repo, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                          commit_message="Upload espnet-bilevel model")
    except Exception as e:  # noqa: BLE001 - hub errors come in many types (auth, HTTP, ...)
        raise UploadError(f"upload to https://huggingface.co/{repo} failed: {e}. "
                          "Check your token (huggingface-cli login or HF_TOKEN) and the repo name")
    return f"https://huggingface.co/{repo}"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--system", required=True, choices=sorted(SYSTEM_TEXT))
    p.add_argument("--pack", type=Path, required=True)
    p.add_argument("--repo", required=True, help="user/name on huggingface.co")
    p.add_argument("--out_dir", type=Path, required=True, help="where the upload folder is staged")
    p.add_argument("--dry_run", action="store_true", help="stage the files, upload nothing")
    add_card_arguments(p)
    a = p.parse_args(argv)
    try:
        if "/" not in a.repo:
            raise UploadError(f"--repo must look like user/name, got {a.repo!r}")
        try:
            card = build_card(a.exp, a.system, a.repo, a.pack, a.train_set, a.unlab_set, a.valid_set,
                              a.pt_exp, a.recipe, a.command, a.license, a.dump_dir)
        except FileNotFoundError as e:
            raise UploadError(str(e))
        files = stage_files(a.pack, card, a.out_dir)
        print(f"hf_upload: staged {len(files)} files in {a.out_dir}:")
        for f in files:
            print(f"  {f}")
        if a.dry_run:
            print(f"hf_upload: dry run: nothing uploaded (would upload to https://huggingface.co/{a.repo})")
            return 0
        url = upload(a.out_dir, a.repo)
        print(f"hf_upload: uploaded to {url}")
    except UploadError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
