"""`data import` file formats and encodings: each format × a couple of shapes, BOM, UTF-16,
CRLF, CSV quoted newlines with the right line numbers, binary and unreadable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core import protocol
from engine.core.errors import EngineError
from engine.data import importer as data_import


def stored(version: data_import.DatasetVersion) -> list[dict]:
    import datasets

    return datasets.load_from_disk(str(version.path / "data")).to_list()


def refused(path: Path, **kwargs) -> EngineError:
    with pytest.raises(EngineError) as caught:
        data_import.import_file(path, **kwargs)
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT
    return caught.value


ALPACA = [{"instruction": "Translate", "input": "chat", "output": "cat"},
          {"instruction": "Say hi", "input": "", "output": "hi"}]
ALPACA_FIRST = [{"role": "user", "content": "Translate\n\nchat"}, {"role": "assistant", "content": "cat"}]


# -- JSONL ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding, newline", [("utf-8", "\n"), ("utf-8-sig", "\n"), ("utf-8", "\r\n"),
                                               ("utf-16", "\r\n"), ("utf-16", "\n")])
def test_jsonl_in_every_supported_encoding_and_line_end(workspace_home: Path, tmp_path: Path,
                                                        encoding: str, newline: str) -> None:
    file = tmp_path / "alpaca.jsonl"
    file.write_bytes(newline.join(json.dumps(r, ensure_ascii=False) for r in ALPACA).encode(encoding))
    version, report = data_import.import_file(file)
    assert (report.shape, report.rows, version.manifest["format"]) == ("alpaca", 2, "jsonl")
    assert stored(version)[0]["messages"] == ALPACA_FIRST


def test_utf16_problems_keep_their_line_numbers(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "u16.jsonl"
    rows = [json.dumps(ALPACA[0]), "", json.dumps({"instruction": "x", "output": ""})]
    file.write_bytes("\r\n".join(rows).encode("utf-16"))
    assert str(refused(file)).startswith("u16.jsonl:3: output: is empty")


# -- JSON ----------------------------------------------------------------------------------------

def test_a_row_problem_report_carries_the_record(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "rows.json"
    file.write_text(json.dumps(ALPACA + [{"instruction": "q", "output": 3}]), encoding="utf-8")
    report_file = tmp_path / "report.jsonl"
    data_import.import_file(file, skip_invalid=True, report_file=report_file)
    problem = json.loads(report_file.read_text(encoding="utf-8"))
    assert problem == {"file": "rows.json", "line": 3, "unit": "row", "field": "output",
                       "problem": "must be text, not int", "text": '{"instruction": "q", "output": 3}'}


def test_json_array_of_records_reports_rows(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "records.json"
    file.write_text(json.dumps(ALPACA + [{"instruction": "x", "output": 3}], indent=2), encoding="utf-8")
    assert refused(file).message.startswith("records.json:row 3: output: must be text, not int")
    version, report = data_import.import_file(file, skip_invalid=True)
    assert report.rows == 2 and stored(version)[0]["messages"] == ALPACA_FIRST


def test_json_object_of_columns_with_a_bom(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "columns.json"
    file.write_text(json.dumps({"prompt": ["2+2?", "3+3?"], "completion": ["4", "6"]}), encoding="utf-8-sig")
    version, report = data_import.import_file(file)
    assert report.shape == "prompt_completion"
    assert stored(version)[1]["messages"] == [{"role": "user", "content": "3+3?"},
                                              {"role": "assistant", "content": "6"}]


def test_a_lone_json_object_is_one_record(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "one.json"
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    file.write_text(json.dumps({"messages": conversation}), encoding="utf-8")
    version, report = data_import.import_file(file)
    assert (report.shape, stored(version)) == ("messages", [{"messages": conversation}])


def test_json_that_does_not_parse_names_file_and_line(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "broken.json"
    file.write_text('[\n  {"text": "a"},\n  {"text": \n]', encoding="utf-8")
    assert refused(file).message.startswith("broken.json:4: not valid JSON")


def test_json_columns_of_different_lengths_are_refused(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "ragged.json"
    file.write_text(json.dumps({"text": ["a", "b"], "label": ["x"]}), encoding="utf-8")
    assert "different lengths" in refused(file).message


# -- CSV / TSV -----------------------------------------------------------------------------------

def test_csv_quoted_newlines_keep_physical_line_numbers(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "qa.csv"
    file.write_bytes(b'instruction,input,output\r\n'
                     b'"first\r\nspans\r\nthree lines",,"ok"\r\n'   # lines 2-4
                     b'"second\r\nspans two",,\r\n'                 # lines 5-6: empty output
                     b'"third","",""\r\n')                          # line 7: empty output
    error = refused(file)
    assert error.message.startswith("qa.csv:5: output: is empty (2 invalid of 3 rows")
    version, report = data_import.import_file(file, skip_invalid=True)
    assert [(p.line, p.field) for p in report.problems] == [(5, "output"), (7, "output")]
    assert stored(version)[0]["messages"][0]["content"] == "first\nspans\nthree lines"


def test_tsv_classification_in_utf16(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "labels.tsv"
    file.write_bytes("text\tlabel\r\ngreat product\tpositive\r\nawful\t0\r\n".encode("utf-16"))
    version, report = data_import.import_file(file)
    assert report.shape == "classification"
    assert stored(version) == [{"text": "great product", "label": "positive"}, {"text": "awful", "label": "0"}]


def test_csv_non_utf8_bytes_are_reported_on_their_record(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "latin.csv"
    file.write_bytes(b"text\nfine\n" + "caf\xe9".encode("latin-1") + b"\nalso fine\n")
    version, report = data_import.import_file(file, skip_invalid=True)
    assert [str(p) for p in report.problems] == ["latin.csv:3: (line): not UTF-8 text (byte 4)"]
    assert stored(version) == [{"text": "fine"}, {"text": "also fine"}]


# -- Parquet and datasets folders ----------------------------------------------------------------

def test_parquet_rows_are_numbered(workspace_home: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"prompt": ["q1", "q2", "q3"], "chosen": ["a", "b", ""],
                             "rejected": ["x", "y", "z"]}), file)
    assert refused(file).message.startswith("pairs.parquet:row 3: chosen: is empty")
    version, report = data_import.import_file(file, skip_invalid=True)
    assert (report.shape, report.rows, version.manifest["format"]) == ("preference", 2, "parquet")


def test_a_folder_saved_by_datasets_imports(workspace_home: Path, tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_list(ALPACA).save_to_disk(str(folder))
    version, report = data_import.import_file(folder)
    assert (version.name, report.shape, report.rows) == ("saved", "alpaca", 2)
    assert data_import.import_file(folder)[0].version == 1  # unchanged folder: same version


def test_a_plain_folder_is_refused(workspace_home: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert "not one saved by datasets" in refused(tmp_path / "plain").message


# -- TXT -----------------------------------------------------------------------------------------

TXT = "First paragraph\r\nstill first.\r\n\r\n\r\nSecond one.\r\n"


def test_txt_paragraphs_become_text_rows(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_bytes(TXT.encode("utf-8-sig"))
    version, report = data_import.import_file(file)
    assert report.shape == "text"
    assert stored(version) == [{"text": "First paragraph\nstill first."}, {"text": "Second one."}]


def test_txt_whole_file_mode_is_one_document(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_bytes(TXT.encode("utf-8"))
    version, _ = data_import.import_file(file, options=data_import.ImportOptions(txt_mode="file"))
    assert stored(version) == [{"text": "First paragraph\nstill first.\n\n\nSecond one.\n"}]
    # A different mode is a different import of the same bytes, so it is a new version.
    assert data_import.import_file(file)[0].version == 2


# -- files that are not data ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["image.jsonl", "image.csv", "image.txt", "image.bin"])
def test_a_binary_file_gets_one_clear_line(workspace_home: Path, tmp_path: Path, name: str) -> None:
    file = tmp_path / name
    file.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    message = refused(file).message
    assert message.startswith(f"{name}: ") and "\n" not in message
    assert "binary" in message or "cannot tell the file format" in message


def test_a_fake_parquet_file_is_refused(workspace_home: Path, tmp_path: Path) -> None:
    file = tmp_path / "fake.parquet"
    file.write_text("not parquet", encoding="utf-8")
    assert refused(file).message.startswith("fake.parquet: not a Parquet file")


def test_a_dataset_dict_folder_keeps_its_splits(workspace_home: Path, tmp_path: Path) -> None:
    import datasets

    from engine.data import split as data_split

    folder = tmp_path / "dict"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ALPACA * 3),
                          "test": datasets.Dataset.from_list(ALPACA[:1])}).save_to_disk(str(folder))
    version, report = data_import.import_file(folder)
    assert (report.shape, report.rows, version.manifest["splits"]) == ("alpaca", 7, {"train": 6, "test": 1})
    assert len(data_split.load_split(version, "test")) == 1
    assert len(data_split.load_rows(version)) == 7
    # One split only: a different import of the same folder, so a new, unsplit version.
    one, report = data_import.import_file(folder, options=data_import.ImportOptions(split="test"))
    assert (one.version, report.rows, "splits" in one.manifest) == (2, 1, False)
    # A version that brought its own splits can be re-split as a whole.
    assert data_split.split_dataset("dict@v1", val=0.5, seed=1).manifest["splits"] == {"train": 3, "validation": 4}


def test_a_dataset_dict_split_with_bad_rows_names_the_split(workspace_home: Path, tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "dict"
    bad = [{"instruction": "q", "output": ""}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ALPACA),
                          "dev": datasets.Dataset.from_list(ALPACA + bad)}).save_to_disk(str(folder))
    assert refused(folder).message.startswith("dict/dev:row 3: output: is empty")
    with pytest.raises(EngineError) as caught:
        data_import.import_file(folder, options=data_import.ImportOptions(split="nope"))
    assert caught.value.code == protocol.ExitCode.USAGE and "no such split" in caught.value.message
