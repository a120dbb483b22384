"""Decoding without ESPnet's beam search: CTC best path (``ctc_best_path``)."""
