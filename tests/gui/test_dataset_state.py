"""Qt-free state of the Datasets page: shape fields, file columns, the problem report with its
lines, the lazy JSONL rows."""

from __future__ import annotations

import json
from pathlib import Path

from engine.data import shapes as data_shapes
from gui.pages.datasets import valid_rows_from
from gui.state.dataset_columns import SHAPE_FIELDS, SHAPE_LABELS, file_columns
from gui.state.dataset_problems import read_report
from gui.state.dataset_rows import JsonlRows, cell_text, columns_for


def test_shape_fields_match_the_engine() -> None:
    assert tuple(SHAPE_FIELDS) == data_shapes.SHAPES == tuple(SHAPE_LABELS)
    for shape, required in data_shapes.SIGNATURES:
        assert set(required) <= set(SHAPE_FIELDS[shape])


def test_file_columns_of_jsonl_json_and_csv(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('\n{"question": "q", "answer": "a"}\n', encoding="utf-8")
    (tmp_path / "b.json").write_text('[\n  {"q": 1, "a": 2},\n  {"q": 3, "a": 4}\n]', encoding="utf-8")
    (tmp_path / "c.csv").write_bytes("\ufeffquestion, answer\r\nq,a\r\n".encode("utf-8"))
    (tmp_path / "d.tsv").write_text("text\tlabel\n", encoding="utf-8")
    assert file_columns(tmp_path / "a.jsonl") == ["question", "answer"]
    assert file_columns(tmp_path / "b.json") == ["q", "a"]
    assert file_columns(tmp_path / "c.csv") == ["question", "answer"]
    assert file_columns(tmp_path / "d.tsv") == ["text", "label"]
    assert file_columns(tmp_path / "missing.jsonl") == []


def test_report_problems_come_with_their_lines(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(("line one\r\n" + "x" * 1000 + "\r\nline three\r\n").encode("utf-16"))
    report = tmp_path / "report.jsonl"
    problems = [{"file": "bad.jsonl", "line": 2, "unit": "line", "field": "(line)", "problem": "not valid JSON"},
                {"file": "bad.jsonl", "line": 3, "unit": "line", "field": "text", "problem": "missing"},
                {"file": "bad.parquet", "line": 9, "unit": "row", "field": "text", "problem": "missing",
                 "text": '{"txt": "x"}'}]
    report.write_text("".join(json.dumps(p) + "\n" for p in problems) + "not json\n", encoding="utf-8")
    read = read_report(report, source)
    assert [(p.where, p.field, p.text[:10]) for p in read] == [
        ("2", "(line)", "xxxxxxxxxx"), ("3", "text", "line three"), ("row 9", "text", "{\"txt\": \"x")]
    assert len(read[0].text) == 300 and read[0].text.endswith("…")


def test_valid_rows_from_the_refusal() -> None:
    assert valid_rows_from("a.jsonl:4: x: y (4 invalid of 12 rows; --skip-invalid imports the valid ones)") == 8
    assert valid_rows_from("a.jsonl: no valid rows") == 0


def test_jsonl_rows_index_lines_without_a_final_newline(tmp_path: Path) -> None:
    file = tmp_path / "rows.jsonl"
    file.write_bytes(b'{"text": "a"}\r\n{"text": "b\\nc"}\n{"text": "last"}')
    rows = JsonlRows(file)
    assert len(rows) == 3
    assert [rows.row(i)["text"] for i in (2, 0, 1)] == ["last", "a", "b\nc"]
    rows.close()
    text = dict(columns_for("text"))["Text"]
    assert cell_text(text({"text": "b\nc"})) == "b ⏎ c"
    assert cell_text("x" * 500).endswith("…") and len(cell_text("x" * 500)) == 160
