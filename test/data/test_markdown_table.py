"""The table lines every results tool writes."""
from espnet_bilevel.data import markdown_table


def test_header_and_row():
    assert markdown_table.header(["system", "WER"]) == ["| system | WER |", "|---|---|"]
    assert markdown_table.row(["bljust", "62.2"]) == "| bljust | 62.2 |"
