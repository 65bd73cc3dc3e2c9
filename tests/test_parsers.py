"""Parsers and dedupe: pure functions of lines, no model, no store."""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.records import Paper, ParseIssue, normalize_title, paper_id_for, title_id
from ingest.parsers import (
    LISTING_BOILERPLATE,
    UnreadableFile,
    corpus_files,
    decode_lines,
    is_listing_boilerplate,
    parse_arxiv,
    parse_jsonl,
    parse_listing,
    read_file,
    sniff_format,
)
from ingest.pipeline import IngestSummary, dedupe

ABSTRACT = "We study a problem at length and propose a method that is long enough to be an abstract."


def numbered(*lines: str) -> list[tuple[int, str]]:
    return list(enumerate(lines, start=1))


def papers_of(records) -> list[Paper]:
    return [r for r in records if isinstance(r, Paper)]


def issues_of(records) -> list[ParseIssue]:
    return [r for r in records if isinstance(r, ParseIssue)]


def write_lines(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    return path


# --------------------------------------------------------------------------------------------
# The bundled corpus (listing dumps)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_records(corpus_dir: Path) -> dict[str, list]:
    return {path.name: list(read_file(path)) for path in corpus_files([corpus_dir])}


@pytest.fixture(scope="module")
def corpus_papers(corpus_records) -> list[Paper]:
    return [r for records in corpus_records.values() for r in papers_of(records)]


def test_corpus_has_five_listing_files(corpus_dir: Path):
    files = corpus_files([corpus_dir])
    assert [f.suffix for f in files] == [".txt"] * 5  # README.md is not a corpus file
    assert files == sorted(files)
    for path in files:
        first = next(line for line in path.read_text("utf-8").splitlines() if line.strip())
        assert sniff_format(path, first) == "listing"


def test_corpus_parses_to_696_entries_without_issues(corpus_records, corpus_papers):
    issues = [str(i) for records in corpus_records.values() for i in issues_of(records)]
    assert issues == []
    assert len(corpus_papers) == 696


def test_corpus_dedupes_to_586_distinct_papers(corpus_papers):
    summary = IngestSummary()
    distinct = list(dedupe(corpus_papers, summary))
    assert len(distinct) == 586
    assert summary.entries == 696
    assert summary.duplicates == 110
    assert len({p.id for p in distinct}) == 586
    assert len({normalize_title(p.title) for p in distinct}) == 586
    # In this corpus every repeated title carries the very same abstract.
    assert summary.conflicts == []


def test_corpus_every_nonblank_line_is_boilerplate_title_or_abstract(corpus_dir, corpus_records):
    """No line is silently lost: each file's non-boilerplate lines are exactly 2 per paper."""
    for name, records in corpus_records.items():
        lines = [line.strip() for line in (corpus_dir / name).read_text("utf-8").splitlines()]
        content = [line for line in lines if line and not is_listing_boilerplate(line)]
        assert len(content) == 2 * len(papers_of(records)), name


def test_corpus_no_boilerplate_in_titles_or_abstracts(corpus_papers):
    for paper in corpus_papers:
        for text in (paper.title, paper.abstract):
            assert not is_listing_boilerplate(text), paper
            for boilerplate in LISTING_BOILERPLATE:
                assert not text.startswith(boilerplate), (boilerplate, paper.title)


def test_corpus_glued_subscribe_prefix_removed(corpus_records):
    first = papers_of(corpus_records["000_85a3c7b6ce7cd839.txt"])[0]
    assert first.title == "Reduce Information Loss in Transformers for Pluralistic Image Inpainting"
    assert first.line == 3
    assert first.abstract.startswith("Transformers have achieved great success")
    for records in corpus_records.values():
        assert not papers_of(records)[0].title.startswith("Subscribe")


def test_corpus_file_with_blank_lines_parses(corpus_records):
    papers = papers_of(corpus_records["002_b3d6ae905662b674.txt"])
    assert len(papers) == 112
    assert papers[0].title == "X-Dancer: Expressive Music to Human Dance Video Generation"
    assert papers[0].line == 11


def test_corpus_titles_shorter_than_abstracts(corpus_papers):
    for paper in corpus_papers:
        assert paper.title and paper.abstract
        assert len(paper.title) < len(paper.abstract), paper.title
        assert "\n" not in paper.title and "\n" not in paper.abstract
        assert paper.id == title_id(paper.title)
        assert paper.source.endswith(".txt")


# --------------------------------------------------------------------------------------------
# Listing parser: hostile input
# --------------------------------------------------------------------------------------------


def test_listing_title_without_abstract_at_end_is_reported():
    records = list(parse_listing(numbered("Title One", ABSTRACT, "Orphan Title At The End"), "f.txt"))
    assert [p.title for p in papers_of(records)] == ["Title One"]
    (issue,) = issues_of(records)
    assert (issue.source, issue.line) == ("f.txt", 3)
    assert "Orphan Title At The End" in issue.message and "no abstract" in issue.message
    assert str(issue).startswith("f.txt:3: ")


def test_listing_boilerplate_only_file_yields_nothing():
    lines = [*sorted(LISTING_BOILERPLATE), "", "Mar 14", "  Subscribe  ", "", "new"]
    assert list(parse_listing(numbered(*lines), "f.txt")) == []


def test_listing_boilerplate_only_file_on_disk(tmp_path: Path):
    path = write_lines(tmp_path / "empty_listing.txt", ["Subscribe", "new", "Mar 14"])
    assert list(read_file(path)) == []


@pytest.mark.parametrize("date", ["Mar 14", "Dec 1", "March 14", "Sep 30, 2024"])
def test_listing_date_lines_dropped(date: str):
    records = list(
        parse_listing(numbered(date, "Title One", date, ABSTRACT, date, "Title Two", ABSTRACT), "f")
    )
    assert issues_of(records) == []
    assert [(p.title, p.abstract) for p in records] == [
        ("Title One", ABSTRACT),
        ("Title Two", ABSTRACT),
    ]


def test_listing_crlf_line_endings(tmp_path: Path):
    lines = [
        "Get trending papers in your email inbox!",
        "SubscribeTitle One",
        ABSTRACT,
        "",
        "Title Two",
        ABSTRACT + "  ",
    ]
    path = write_lines(tmp_path / "crlf.txt", lines, newline="\r\n")
    records = list(read_file(path))
    assert issues_of(records) == []
    assert [(p.title, p.abstract) for p in records] == [
        ("Title One", ABSTRACT),
        ("Title Two", ABSTRACT),
    ]
    assert [p.line for p in records] == [2, 5]
    assert all("\r" not in p.title + p.abstract for p in records)


def test_listing_too_short_abstract_reported_and_parser_stays_in_step():
    records = list(parse_listing(numbered("Title One", "Too short.", "Title Two", ABSTRACT), "f.txt"))
    (issue,) = issues_of(records)
    assert issue.line == 1 and "too short" in issue.message and "Title One" in issue.message
    assert [(p.title, p.abstract) for p in papers_of(records)] == [("Title Two", ABSTRACT)]


def test_listing_long_paragraph_where_title_expected_is_reported():
    paragraph = "word " * 200
    records = list(parse_listing(numbered(paragraph, "Title One", ABSTRACT), "f.txt"))
    (issue,) = issues_of(records)
    assert issue.line == 1 and "long paragraph" in issue.message
    assert [p.title for p in papers_of(records)] == ["Title One"]


def test_listing_glued_prefix_only_stripped_on_first_title():
    records = list(
        parse_listing(
            numbered("Subscribe", "SubscribeTitle One", ABSTRACT, "Subscriber Churn Models", ABSTRACT),
            "f",
        )
    )
    assert [p.title for p in records] == ["Title One", "Subscriber Churn Models"]


def test_listing_whitespace_inside_lines_normalised():
    records = list(parse_listing(numbered("  Title \t One  ", "  " + ABSTRACT.replace(" ", "   ")), "f"))
    assert [(p.title, p.abstract) for p in records] == [("Title One", ABSTRACT)]


def test_listing_file_with_utf8_bom(tmp_path: Path):
    lines = [
        "Get trending papers in your email inbox!",
        "SubscribeTitle One",
        ABSTRACT,
        "Title Two",
        ABSTRACT,
    ]
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8") + b"\n")
    records = list(read_file(path))
    assert issues_of(records) == []
    assert [p.title for p in records] == ["Title One", "Title Two"]


def test_listing_undecodable_abstract_does_not_pair_title_with_next_title():
    raw = [
        b"First Title Of A Paper About Transformers\n",
        b"Caf\xe9 latin-1 byte in an abstract that is otherwise long enough to count.\n",
        b"Second Title Of Another Paper On Attention Heads\n",
        ABSTRACT.encode() + b"\n",
    ]
    records = list(parse_listing(decode_lines(raw, "f.txt"), "f.txt"))
    assert any(i.line == 2 and "UTF-8" in i.message for i in issues_of(records))
    papers = papers_of(records)
    assert all(p.abstract != "Second Title Of Another Paper On Attention Heads" for p in papers)
    assert [(p.title, p.abstract) for p in papers] == [
        ("Second Title Of Another Paper On Attention Heads", ABSTRACT)
    ]


# --------------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------------


def jsonl(*objects: object) -> list[tuple[int, str]]:
    return numbered(*(o if isinstance(o, str) else json.dumps(o) for o in objects))


def test_jsonl_good_record_with_extra_fields():
    obj = {
        "id": "paper-7",
        "title": "  A   Title\nwith breaks ",
        "abstract": "An\n abstract   text.",
        "authors": ["Ada Lovelace", " Alan Turing ", ""],
        "year": 2024,
        "score": 0.5,
        "peer_reviewed": True,
        "venue": {"name": "NeurIPS", "year": 2024},
        "tags": [["nested"]],
        "notes": None,
        "empty": "   ",
        "url": "https://example.org/p7",
    }
    (paper,) = parse_jsonl(jsonl(obj), "papers.jsonl")
    assert paper.id == "paper-7"
    assert paper.title == "A Title with breaks"
    assert paper.abstract == "An abstract text."
    assert (paper.source, paper.line) == ("papers.jsonl", 1)
    assert paper.metadata == {
        "authors": "Ada Lovelace, Alan Turing",
        "year": 2024,
        "score": 0.5,
        "peer_reviewed": True,
        "url": "https://example.org/p7",
    }


def test_jsonl_bad_lines_reported_with_file_and_line_good_ones_kept():
    lines = jsonl(
        {"title": "Good One", "abstract": ABSTRACT},
        "",
        '{"title": "Broken", "abstract": ',
        {"abstract": ABSTRACT},
        {"title": "No abstract", "abstract": "   "},
        {"title": 42, "abstract": None},
        ["title", "abstract"],
        '"just a string"',
        "   ",
        {"title": "Good Two", "abstract": ABSTRACT},
    )
    records = list(parse_jsonl(lines, "mixed.jsonl"))
    assert [(p.title, p.line) for p in papers_of(records)] == [("Good One", 1), ("Good Two", 10)]
    issues = {i.line: i for i in issues_of(records)}
    assert sorted(issues) == [3, 4, 5, 6, 7, 8]
    assert all(i.source == "mixed.jsonl" for i in issues.values())
    assert str(issues[3]).startswith("mixed.jsonl:3: malformed JSON")
    assert "missing or empty title" in issues[4].message
    assert "missing or empty abstract" in issues[5].message
    assert "title and abstract" in issues[6].message
    assert "expected a JSON object, got list" in issues[7].message
    assert "got str" in issues[8].message


@pytest.mark.parametrize(
    ("raw_id", "expected"),
    [
        ("2301.00001", "arxiv:2301.00001"),
        ("2301.00001v2", "arxiv:2301.00001"),
        ("arXiv:2301.12345v11", "arxiv:2301.12345"),
        ("arxiv:0704.0001", "arxiv:0704.0001"),
        (" 2301.00001v1 ", "arxiv:2301.00001"),
        ("hep-th/9901001", "arxiv:hep-th/9901001"),
        ("hep-th/9901001v3", "arxiv:hep-th/9901001"),
        ("math.GT/0309136", "arxiv:math.GT/0309136"),
        ("doi:10.1000/xyz123", "doi:10.1000/xyz123"),
        ("W2963403868", "W2963403868"),
        (12345, "12345"),
    ],
)
def test_jsonl_ids(raw_id, expected):
    (paper,) = parse_jsonl(jsonl({"id": raw_id, "title": "T", "abstract": ABSTRACT}), "f")
    assert paper.id == expected
    assert "id" not in paper.metadata


@pytest.mark.parametrize("raw_id", [None, "", "   "])
def test_jsonl_no_id_uses_title_hash(raw_id):
    obj = {"title": "Attention Is All You Need", "abstract": ABSTRACT}
    if raw_id is not None:
        obj["id"] = raw_id
    (paper,) = parse_jsonl(jsonl(obj), "f")
    assert paper.id == title_id("Attention Is All You Need")
    assert paper.id.startswith("t-") and len(paper.id) == 18


def test_title_id_ignores_case_punctuation_and_spacing():
    variants = [
        "Attention Is All You Need",
        "attention is all you need",
        "Attention is all you need!",
        "  ATTENTION -- is all, you need.  ",
        "Attention\u00a0Is All You Need",
    ]
    assert len({title_id(v) for v in variants}) == 1
    assert title_id("Attention Is All You Need") != title_id("Attention Is Not All You Need")
    records = parse_jsonl(jsonl(*({"title": v, "abstract": ABSTRACT} for v in variants)), "f")
    assert len({p.id for p in records}) == 1


def test_paper_id_for_prefers_arxiv_then_given_then_title():
    assert paper_id_for("2301.00001v4", "T") == "arxiv:2301.00001"
    assert paper_id_for("custom", "T") == "custom"
    assert paper_id_for(None, "T") == title_id("T")


# --------------------------------------------------------------------------------------------
# arXiv metadata snapshot
# --------------------------------------------------------------------------------------------

ARXIV_RECORD = {
    "id": "0704.0001",
    "submitter": "Pavel Nadolsky",
    "authors": "C. Bal\\'azs, E. L. Berger, P. M. Nadolsky, C.-P. Yuan",
    "title": "Calculation of prompt diphoton production cross sections at Tevatron and\n  LHC\n  energies",
    "comments": "37 pages, 15 figures; published version",
    "journal-ref": "Phys.Rev.D76:013009,2007",
    "doi": "10.1103/PhysRevD.76.013009",
    "report-no": "ANL-HEP-PR-07-12",
    "categories": "hep-ph",
    "license": None,
    "abstract": "  A fully differential calculation in perturbative quantum chromodynamics is\n"
    "presented for the production of massive photon pairs at hadron colliders.  All\n"
    "next-to-leading order perturbative contributions are included.\n",
    "versions": [
        {"version": "v1", "created": "Mon, 2 Apr 2007 19:18:42 GMT"},
        {"version": "v2", "created": "Tue, 24 Jul 2007 20:10:27 GMT"},
    ],
    "update_date": "2008-11-13",
    "authors_parsed": [["Balázs", "C.", ""], ["Berger", "E. L.", ""]],
}

OLD_STYLE_RECORD = {
    **ARXIV_RECORD,
    "id": "hep-th/9901001",
    "title": "An old-style  identifier",
    "categories": "hep-th math.QA",
    "doi": None,
    "journal-ref": None,
    "update_date": "2009-10-31",
}


def test_arxiv_record_normalised_with_metadata():
    (paper,) = parse_arxiv(jsonl(ARXIV_RECORD), "arxiv-metadata.json")
    assert paper.id == "arxiv:0704.0001"
    assert paper.title == (
        "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    )
    assert paper.abstract.startswith("A fully differential calculation in perturbative")
    assert "  " not in paper.abstract and "\n" not in paper.abstract
    assert paper.abstract.endswith("contributions are included.")
    assert paper.metadata == {
        "authors": "C. Bal\\'azs, E. L. Berger, P. M. Nadolsky, C.-P. Yuan",
        "categories": "hep-ph",
        "date": "2008-11-13",
        "doi": "10.1103/PhysRevD.76.013009",
        "journal-ref": "Phys.Rev.D76:013009,2007",
        "url": "https://arxiv.org/abs/0704.0001",
    }
    assert all(isinstance(v, str | int | float | bool) for v in paper.metadata.values())


def test_arxiv_old_style_id():
    (paper,) = parse_arxiv(jsonl(OLD_STYLE_RECORD), "f")
    assert paper.id == "arxiv:hep-th/9901001"
    assert paper.title == "An old-style identifier"
    assert paper.metadata["url"] == "https://arxiv.org/abs/hep-th/9901001"
    assert paper.metadata["categories"] == "hep-th math.QA"
    assert "doi" not in paper.metadata and "journal-ref" not in paper.metadata


def test_arxiv_missing_fields_reported():
    no_id = {k: v for k, v in ARXIV_RECORD.items() if k != "id"}
    no_abstract = {**ARXIV_RECORD, "abstract": ""}
    records = list(parse_arxiv(jsonl(no_id, no_abstract, "{oops", ARXIV_RECORD), "snap.json"))
    issues = issues_of(records)
    assert [i.line for i in issues] == [1, 2, 3]
    assert "missing or empty id" in issues[0].message
    assert "missing or empty abstract" in issues[1].message
    assert "malformed JSON" in issues[2].message
    assert [p.line for p in papers_of(records)] == [4]


def test_sniff_format(tmp_path: Path):
    arxiv_line = json.dumps(ARXIV_RECORD)
    plain_line = json.dumps({"title": "T", "abstract": ABSTRACT})
    assert sniff_format(Path("snapshot.json"), arxiv_line) == "arxiv"
    assert sniff_format(Path("snapshot.jsonl"), arxiv_line) == "arxiv"
    assert sniff_format(Path("snapshot.txt"), arxiv_line) == "arxiv"
    assert sniff_format(Path("papers.jsonl"), plain_line) == "jsonl"
    assert sniff_format(Path("papers.txt"), plain_line) == "jsonl"
    assert sniff_format(Path("listing.txt"), "SubscribeSome Title") == "listing"
    assert sniff_format(Path("listing"), "Some Title") == "listing"
    assert sniff_format(Path("broken.jsonl"), "{not json") == "jsonl"


def test_read_file_sniffs_arxiv_snapshot(tmp_path: Path):
    path = write_lines(
        tmp_path / "arxiv-metadata-oai-snapshot.json",
        [json.dumps(ARXIV_RECORD), "", json.dumps(OLD_STYLE_RECORD)],
    )
    records = list(read_file(path))
    assert [p.id for p in records] == ["arxiv:0704.0001", "arxiv:hep-th/9901001"]
    assert [p.line for p in records] == [1, 3]
    assert all(p.source == path.name for p in records)
    assert records[0].metadata["url"] == "https://arxiv.org/abs/0704.0001"


def test_read_file_forced_format(tmp_path: Path):
    path = write_lines(tmp_path / "snap.json", [json.dumps(ARXIV_RECORD)])
    (paper,) = read_file(path, "jsonl")
    # As plain JSONL every scalar field is kept (no url synthesised, update_date not renamed).
    assert "url" not in paper.metadata and paper.metadata["update_date"] == "2008-11-13"
    assert paper.metadata["submitter"] == "Pavel Nadolsky"


def test_arxiv_parser_streams():
    """The parser yields the first paper after reading one line, not the whole input."""
    pulled: list[int] = []

    def lines() -> Iterator[tuple[int, str]]:
        for number in (1, 2):
            pulled.append(number)
            yield number, json.dumps({**ARXIV_RECORD, "id": f"0704.000{number}"})
        raise AssertionError("parser read past line 2 to produce the first paper")

    records = parse_arxiv(lines(), "snapshot.json")
    first = next(records)
    assert isinstance(first, Paper) and first.id == "arxiv:0704.0001"
    assert pulled == [1]
    second = next(records)
    assert second.id == "arxiv:0704.0002" and pulled == [1, 2]


def test_read_file_streams_large_file(tmp_path: Path):
    """``read_file`` decodes line by line: a late undecodable line does not stop earlier records."""
    path = tmp_path / "big.jsonl"
    with path.open("wb") as handle:
        for n in range(2000):
            handle.write(json.dumps({"id": f"p{n}", "title": f"T {n}", "abstract": ABSTRACT}).encode())
            handle.write(b"\n")
        handle.write(b'{"title": "\xff\xfe", "abstract": "x"}\n')
    records = read_file(path)
    assert next(records).id == "p0"
    rest = list(records)
    assert len(papers_of(rest)) == 1999
    (issue,) = issues_of(rest)
    assert issue.line == 2001


# --------------------------------------------------------------------------------------------
# read_file / corpus_files on unreadable input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n\t\n"])
def test_read_file_empty_file(tmp_path: Path, content: bytes):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(UnreadableFile, match="empty") as excinfo:
        list(read_file(path))
    assert str(path) in str(excinfo.value)


def test_read_file_binary_file(tmp_path: Path):
    path = tmp_path / "model.txt"
    path.write_bytes(b"PK\x03\x04\x00\x00\x00binary\x00stuff\n" * 10)
    with pytest.raises(UnreadableFile, match="binary") as excinfo:
        list(read_file(path))
    assert str(path) in str(excinfo.value)


def test_read_file_nul_byte_after_first_block(tmp_path: Path):
    path = tmp_path / "late.jsonl"
    good = json.dumps({"title": "T", "abstract": ABSTRACT}).encode() + b"\n"
    count = 4096 // len(good) + 5
    path.write_bytes(good * count + b"\x00\x01\x02\n")
    records = read_file(path)
    got = []
    with pytest.raises(UnreadableFile, match="binary") as excinfo:
        for record in records:
            got.append(record)
    assert f"late.jsonl:{count + 1}:" in str(excinfo.value)
    assert len(got) == count


def test_read_file_non_utf8_line_reported_others_parse(tmp_path: Path):
    path = tmp_path / "latin1.jsonl"
    lines = [
        json.dumps({"title": "First", "abstract": ABSTRACT}).encode(),
        '{"title": "Caf\u00e9", "abstract": "Latin-1 encoded line."}'.encode("latin-1"),
        json.dumps({"title": "Third \u00e9t\u00e9", "abstract": ABSTRACT}, ensure_ascii=False).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    records = list(read_file(path))
    assert [p.title for p in papers_of(records)] == ["First", "Third \u00e9t\u00e9"]
    (issue,) = issues_of(records)
    assert (issue.source, issue.line) == ("latin1.jsonl", 2)
    assert "UTF-8" in issue.message


def test_read_file_missing_path(tmp_path: Path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(UnreadableFile, match="no such file") as excinfo:
        list(read_file(path))
    assert str(path) in str(excinfo.value)


def test_read_file_directory(tmp_path: Path):
    with pytest.raises(UnreadableFile, match="directory"):
        list(read_file(tmp_path))


def test_corpus_files_missing_path_raises(tmp_path: Path, corpus_dir: Path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(UnreadableFile, match="no such file or directory") as excinfo:
        corpus_files([corpus_dir, missing])
    assert str(missing) in str(excinfo.value)


def test_corpus_files_expands_directories(tmp_path: Path):
    for name in ["b.jsonl", "a.txt", "c.JSON", "d.ndjson", "notes.md", "data.csv"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "sub.txt").mkdir()
    explicit = tmp_path / "data.csv"
    assert [p.name for p in corpus_files([tmp_path])] == ["a.txt", "b.jsonl", "c.JSON", "d.ndjson"]
    assert corpus_files([explicit]) == [explicit]  # an explicit file is taken whatever its name
    assert corpus_files([]) == []


# --------------------------------------------------------------------------------------------
# dedupe
# --------------------------------------------------------------------------------------------


def make_paper(title: str, abstract: str = ABSTRACT, source: str = "a.txt", line: int = 1, **kw):
    return Paper(
        id=kw.pop("id", title_id(title)), title=title, abstract=abstract, source=source, line=line, **kw
    )


def test_dedupe_same_id_same_content_is_a_duplicate():
    summary = IngestSummary()
    records = [
        make_paper("Title One", source="a.txt", line=1),
        make_paper("Title Two", source="a.txt", line=3),
        make_paper("Title One", source="b.txt", line=7),
        make_paper("title one!", source="c.txt", line=9),  # same id, title spelled differently
    ]
    kept = list(dedupe(records, summary))
    assert [(p.title, p.source) for p in kept] == [("Title One", "a.txt"), ("Title Two", "a.txt")]
    assert (summary.entries, summary.duplicates) == (4, 2)
    # A different spelling of the title changes the content hash: reported, first kept.
    assert len(summary.conflicts) == 1 and "c.txt:9" in summary.conflicts[0]


def test_dedupe_same_title_different_abstract_is_a_conflict_first_kept():
    summary = IngestSummary()
    first = make_paper("Title One", ABSTRACT, source="a.txt", line=5)
    other = make_paper("Title One", ABSTRACT + " Revised.", source="b.txt", line=11)
    kept = list(dedupe([first, other, first], summary))
    assert kept == [first]
    assert (summary.entries, summary.duplicates) == (3, 2)
    (conflict,) = summary.conflicts
    assert "'Title One'" in conflict and "a.txt:5 kept" in conflict and "b.txt:11 differs" in conflict


def test_dedupe_collects_issues_and_is_lazy():
    summary = IngestSummary()
    issue = ParseIssue("x.jsonl", 4, "malformed JSON")
    gen = dedupe(iter([issue, make_paper("A"), make_paper("B")]), summary)
    assert next(gen).title == "A"
    assert summary.issues == ["x.jsonl:4: malformed JSON"]
    assert summary.entries == 1
    assert [p.title for p in gen] == ["B"]


def test_json_array_file_pretty_printed(tmp_path: Path):
    papers = [
        {"title": "Array Paper One", "abstract": ABSTRACT},
        {"title": "Array Paper Two"},
        {"title": "Array Paper Three", "abstract": ABSTRACT, "id": "2301.00001v3"},
    ]
    path = tmp_path / "papers.json"
    path.write_text(json.dumps(papers, indent=2), encoding="utf-8")
    records = list(read_file(path))
    assert [p.title for p in papers_of(records)] == ["Array Paper One", "Array Paper Three"]
    assert papers_of(records)[1].id == "arxiv:2301.00001"
    (issue,) = issues_of(records)
    assert issue.line == 2 and "abstract" in issue.message


def test_json_array_that_is_broken(tmp_path: Path):
    path = tmp_path / "broken.json"
    path.write_text('[{"title": "x",', encoding="utf-8")
    (issue,) = issues_of(list(read_file(path)))
    assert "not a valid JSON array" in issue.message


# --------------------------------------------------------------------------------------------
# Bounded ingestion (issue 16): over-long records, unreadable paths, hostile escapes.
# The pipeline tests here are fast: a hashing embedder and a word counter, no model.
# --------------------------------------------------------------------------------------------

MB = 1024 * 1024
GOOD_FIRST = {"id": "good-1", "title": "Sparse Attention for Long Documents", "abstract": ABSTRACT}
GOOD_LAST = {"id": "good-3", "title": "Tokenizer-Free Language Models", "abstract": ABSTRACT + " Bytes."}
GOOD_TITLES = {GOOD_FIRST["title"], GOOD_LAST["title"]}
_WORDS = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "


def write_big_record(path: Path, abstract_bytes: int) -> Path:
    """Three JSON lines, the middle one a valid record with an abstract of ``abstract_bytes`` bytes
    of words, written in 1 MiB pieces (the test never holds it whole)."""
    piece = _WORDS * (MB // len(_WORDS))
    with path.open("wb") as handle:
        handle.write(json.dumps(GOOD_FIRST).encode() + b"\n")
        handle.write(b'{"id": "big", "title": "A Record With A Huge Abstract", "abstract": "')
        for _ in range(-(-abstract_bytes // len(piece))):  # bounded: abstract_bytes / 1 MiB pieces
            handle.write(piece)
        handle.write(b'"}\n')
        handle.write(json.dumps(GOOD_LAST).encode() + b"\n")
    return path


@pytest.fixture
def ingest_fast(settings_factory):
    """``ingest_fast(paths, **settings) -> (summary, stored titles)``: the real pipeline and store,
    with the hashing embedder and word counter of :mod:`tests.fakes`."""
    from app.core.store import get_collections, iter_records, make_client
    from ingest.pipeline import ingest
    from tests.fakes import HashingEmbedding, count_words

    def go(paths: list[Path], **overrides: object) -> tuple[IngestSummary, set[str]]:
        settings = settings_factory(collection="bounded", **overrides)
        summary = ingest(
            settings, paths, embed_model=HashingEmbedding(), count_tokens=count_words, progress=False
        )
        _, papers_col = get_collections(make_client(settings), settings.collection)
        titles = {rec["metadatas"]["title"] for rec in iter_records(papers_col, include=["metadatas"])}
        return summary, titles

    return go


def test_finding_a_50mb_abstract_is_skipped_and_the_good_records_go_in(tmp_path: Path, ingest_fast):
    """Issue 16, finding 1: three records, the middle one a valid 50 MB abstract. Before, nothing
    was written (minutes of CPU, GBs of memory); now the two good records are ingested and the bad
    one is reported with file and line."""
    path = write_big_record(tmp_path / "three.jsonl", 50 * MB)
    summary, titles = ingest_fast([path])
    assert titles == GOOD_TITLES
    assert (summary.new, summary.entries) == (2, 2)
    (issue,) = summary.issues
    assert issue.startswith("three.jsonl:2: line of ") and "PAPERQA_INGEST_MAX_LINE_BYTES" in issue
    assert "three.jsonl:2:" in summary.render()


def _listing(*lines: str) -> str:
    return "\n".join(lines) + "\n"


LONG_WORD_TITLE = " ".join(["Supercalifragilisticexpialidocious"] * 40)  # 1399 chars, 40 words
OVER_BOUND_CASES = {
    # name: (file name, content, bad line, words the issue must have, settings)
    "line": (
        "line.jsonl",
        "\n".join(
            json.dumps(r)
            for r in (GOOD_FIRST, {"title": "Over The Line Bound", "abstract": "word " * 1200}, GOOD_LAST)
        ),
        2,
        ["line of 60", "PAPERQA_INGEST_MAX_LINE_BYTES"],
        {"ingest_max_line_bytes": 4096},
    ),
    "abstract": (
        "abstract.jsonl",
        "\n".join(
            json.dumps(r)
            for r in (
                GOOD_FIRST,
                {"title": "Over The Abstract Bound", "abstract": "word " * 30_000},
                GOOD_LAST,
            )
        ),
        2,
        ["abstract of 150000 characters", "PAPERQA_INGEST_MAX_ABSTRACT_CHARS"],
        {},
    ),
    "title": (
        "title.jsonl",
        "\n".join(
            json.dumps(r) for r in (GOOD_FIRST, {"title": LONG_WORD_TITLE, "abstract": ABSTRACT}, GOOD_LAST)
        ),
        2,
        ["title of 1399 characters", "PAPERQA_INGEST_MAX_TITLE_CHARS"],
        {},
    ),
    "listing": (
        "listing.txt",
        _listing(GOOD_FIRST["title"], ABSTRACT, "A Title Whose Abstract Is Too Long", "word " * 1200)
        + _listing(GOOD_LAST["title"], GOOD_LAST["abstract"]),
        4,
        ["line of 60", "PAPERQA_INGEST_MAX_LINE_BYTES"],
        {"ingest_max_line_bytes": 4096},
    ),
}


@pytest.mark.parametrize("case", sorted(OVER_BOUND_CASES))
def test_a_record_over_a_bound_is_reported_and_the_rest_go_in(case: str, tmp_path: Path, ingest_fast):
    """A line over the line bound, an abstract or a title over its bound (JSONL), an over-long line
    in a listing dump: reported with file:line and skipped; the good records around it go in."""
    name, content, bad_line, words, overrides = OVER_BOUND_CASES[case]
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    summary, titles = ingest_fast([path], **overrides)
    assert titles == GOOD_TITLES
    assert summary.new == 2
    (issue,) = [i for i in summary.issues if i.startswith(f"{name}:{bad_line}:")]
    assert all(word in issue for word in words), issue
    if case == "listing":  # the title before the long line is never paired with the line after it
        lost = "title 'A Title Whose Abstract Is Too Long' lost its abstract to the unreadable line 4"
        assert summary.issues == [issue, f"{name}:3: {lost}; skipped"]
    else:
        assert summary.issues == [issue]


def test_listing_over_long_lines_keep_pairing_and_numbering(tmp_path: Path):
    """An over-long line where a title is expected, and one where an abstract is expected: each is
    reported with its line, the title that lost its abstract is never paired with the next line, and
    the papers after them keep their right line numbers."""
    long_line = "word " * (2 * MB // 5 + 10)  # just over 2 MiB: over the 1 MiB line bound
    path = tmp_path / "dump.txt"
    path.write_text(
        _listing(long_line, "Title One", ABSTRACT, "Title Two", long_line, "Title Three", ABSTRACT),
        encoding="utf-8",
    )
    records = list(read_file(path))
    assert [(p.title, p.line) for p in papers_of(records)] == [("Title One", 2), ("Title Three", 6)]
    assert [(i.line, i.message.split(" ")[0]) for i in issues_of(records)] == [
        (1, "line"),
        (5, "line"),
        (4, "title"),
    ]
    assert "lost its abstract" in issues_of(records)[2].message


def _peak_bytes_reading(path: Path) -> tuple[int, list]:
    tracemalloc.start()
    try:
        records = list(read_file(path))
        return tracemalloc.get_traced_memory()[1], records
    finally:
        tracemalloc.stop()


def test_peak_memory_of_reading_does_not_grow_with_a_long_line(tmp_path: Path):
    """The peak while parsing a file with one 50 MB line is far below that line (it is never held
    whole) and the same as with a 5 MB line."""
    peaks = {}
    for size in (5, 50):
        path = write_big_record(tmp_path / f"big{size}.jsonl", size * MB)
        peaks[size], records = _peak_bytes_reading(path)
        assert [p.id for p in papers_of(records)] == ["good-1", "good-3"]
        assert [p.line for p in papers_of(records)] == [1, 3]
        assert [i.line for i in issues_of(records)] == [2]
    assert peaks[50] < 5 * MB, peaks
    assert abs(peaks[50] - peaks[5]) < 1 * MB, peaks


def _all_strings(paper: Paper) -> list[str]:
    return [paper.id, paper.title, paper.abstract, *paper.metadata, *map(str, paper.metadata.values())]


def test_lone_surrogates_and_nuls_from_json_escapes_are_cleaned(tmp_path: Path):
    """JSON escapes can spell a lone surrogate or a NUL, which no encoder, tokenizer or store takes:
    every text, metadata key and value a parser yields is valid, NUL-free Unicode."""
    jsonl_path = tmp_path / "escapes.jsonl"
    jsonl_path.write_text(
        '{"id": "p\\ud800", "title": "Lone \\ud800 surrogate \\u0000 title", '
        '"abstract": "An abstract with a NUL \\u0000 and a lone \\udfff low surrogate, long enough.", '
        '"note\\u0001\\ud801": "meta \\ud83d value", "authors": ["A \\u0000 B", "C \\udc00"]}\n',
        encoding="utf-8",
    )
    arxiv_path = tmp_path / "arxiv-snapshot.json"
    arxiv = json.dumps({**ARXIV_RECORD, "title": "T \ud800 \x00 x", "authors": "Ann \udfff \x01 Bo"})
    arxiv_path.write_text(arxiv + "\n", encoding="utf-8")
    papers = papers_of(list(read_file(jsonl_path))) + papers_of(list(read_file(arxiv_path)))
    assert [p.metadata.get("url", "jsonl") for p in papers] == ["jsonl", "https://arxiv.org/abs/0704.0001"]
    for paper in papers:
        for text in _all_strings(paper):
            text.encode("utf-8")  # a lone surrogate would raise UnicodeEncodeError
            assert not any(ord(c) < 32 and c not in "\t\n\r" for c in text), repr(text)
    jsonl_paper, arxiv_paper = papers
    assert jsonl_paper.title == "Lone \ufffd surrogate title"
    assert jsonl_paper.metadata["note \ufffd"] == "meta \ufffd value"
    assert jsonl_paper.metadata["authors"] == "A B, C \ufffd"
    assert arxiv_paper.title == "T \ufffd x" and arxiv_paper.metadata["authors"] == "Ann \ufffd Bo"
    assert all(len(p.content_hash) == 40 for p in papers)  # hashing encodes every text


def test_listing_control_characters_are_cleaned(tmp_path: Path):
    path = tmp_path / "ctl.txt"
    path.write_text(_listing("Title\x07 One\x1b", ABSTRACT + "\x01\x7f"), encoding="utf-8")
    (paper,) = read_file(path)
    assert (paper.title, paper.abstract) == ("Title One", ABSTRACT)


def test_deeply_nested_json_line_is_reported_not_fatal(tmp_path: Path):
    path = tmp_path / "deep.jsonl"
    deep = '{"title": "Deep", "abstract": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text("\n".join([json.dumps(GOOD_FIRST), deep, json.dumps(GOOD_LAST)]) + "\n", encoding="utf-8")
    records = list(read_file(path))
    assert [p.id for p in papers_of(records)] == ["good-1", "good-3"]
    (issue,) = issues_of(records)
    assert issue.line == 2 and "nested too deeply" in issue.message


def _bad_links(folder: Path) -> dict[str, Path]:
    """A symbolic link loop (two links to each other) and a dangling link, as corpus files."""
    folder.mkdir()
    loop_a, loop_b, dangling = folder / "loop_a.jsonl", folder / "loop_b.jsonl", folder / "dangling.jsonl"
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    os.symlink(folder / "gone.jsonl", dangling)
    return {"symbolic link loop": loop_a, "which does not exist": dangling}


@pytest.mark.parametrize("given", ["paths", "folder"])
def test_symlink_loop_and_dangling_link_are_reported_good_files_go_in(
    given: str, tmp_path: Path, ingest_fast
):
    """Issue 16, finding 5a: a symbolic link loop among the inputs stopped the whole run. Now each
    unreachable path is reported (path and what to do) and skipped, given by name or in a folder."""
    folder = tmp_path / "corpus"
    bad = _bad_links(folder)
    good = folder / "good.jsonl"
    good.write_text(json.dumps(GOOD_FIRST) + "\n" + json.dumps(GOOD_LAST) + "\n", encoding="utf-8")
    summary, titles = ingest_fast(
        [folder] if given == "folder" else [bad["symbolic link loop"], good, bad["which does not exist"]]
    )
    assert titles == GOOD_TITLES and summary.new == 2
    for words, path in bad.items():
        (issue,) = [i for i in summary.issues if i.startswith(f"{path}:")]
        assert words in issue and ("fix the link or remove it" in issue), issue


def test_corpus_files_without_a_handler_still_raises_for_a_broken_link(tmp_path: Path):
    bad = _bad_links(tmp_path / "links")
    for words, path in bad.items():
        with pytest.raises(UnreadableFile, match=words):
            corpus_files([path])


def reads_unreadable_files(folder: Path) -> bool:
    """Whether this process reads a file of mode 000: root does (unless its capabilities are dropped)."""
    probe = folder / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        probe.read_text()
    except PermissionError:
        return False
    finally:
        probe.unlink()
    return True


def test_permission_denied_file_and_folder_are_reported_good_files_go_in(tmp_path: Path, ingest_fast):
    if os.geteuid() == 0 and reads_unreadable_files(tmp_path):
        pytest.skip("root reads every file whatever its mode")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(GOOD_FIRST) + "\n" + json.dumps(GOOD_LAST) + "\n", encoding="utf-8")
    locked_file = tmp_path / "locked.jsonl"
    locked_file.write_text(json.dumps({"title": "Locked", "abstract": ABSTRACT}) + "\n", encoding="utf-8")
    locked_folder = tmp_path / "locked"
    locked_folder.mkdir()
    (locked_folder / "inside.jsonl").write_text(locked_file.read_text(), encoding="utf-8")
    locked_file.chmod(0)
    locked_folder.chmod(0)
    try:
        summary, titles = ingest_fast([locked_file, good, locked_folder])
    finally:
        locked_file.chmod(0o644)
        locked_folder.chmod(0o755)
    assert titles == GOOD_TITLES and summary.new == 2
    (file_issue,) = [i for i in summary.issues if i.startswith(f"{locked_file}:")]
    assert "permission denied" in file_issue and "chmod" in file_issue
    (folder_issue,) = [i for i in summary.issues if i.startswith(f"{locked_folder}:")]
    assert "cannot be listed" in folder_issue and "chmod" in folder_issue


def test_json_array_file_over_its_bound_is_reported_and_skipped(tmp_path: Path, ingest_fast):
    """A JSON array is read whole, so a big one is refused (with the advice to convert it to JSON
    lines); one under the bound is read even when it is one line longer than the line bound."""
    small = tmp_path / "small.json"
    small.write_text(json.dumps([{**GOOD_FIRST, "note": "n" * 600}, {**GOOD_LAST, "note": "n" * 600}]))
    big = tmp_path / "big.json"
    big.write_text(
        json.dumps([{"title": f"Big Array Paper {i}", "abstract": "word " * 800} for i in range(3)])
    )
    assert 1024 < small.stat().st_size < 8192 < big.stat().st_size
    summary, titles = ingest_fast([big, small], ingest_max_array_bytes=8192, ingest_max_line_bytes=1024)
    assert titles == GOOD_TITLES
    (issue,) = summary.issues
    assert issue.startswith(f"{big}: ") and "PAPERQA_INGEST_MAX_ARRAY_BYTES" in issue
    assert "convert it to JSON lines" in issue and "big.jsonl" in issue


def test_json_array_element_over_a_bound_is_reported_by_position(tmp_path: Path):
    """In a JSON array under its bound, an element over a bound is reported with its position and
    skipped before any work on it; the other elements are read."""
    path = tmp_path / "papers.json"
    path.write_text(json.dumps([GOOD_FIRST, {"title": "Huge", "abstract": "word " * 40_000}, GOOD_LAST]))
    records = list(read_file(path))
    assert [p.id for p in papers_of(records)] == ["good-1", "good-3"]
    (issue,) = issues_of(records)
    assert issue.line == 2 and issue.message.startswith("abstract of 200000 characters is over the limit")


def test_listing_title_over_its_bound_takes_its_abstract_with_it():
    """A listing title over the title bound is skipped with its abstract line: that line is never
    taken for the next title."""
    from dataclasses import replace

    from ingest.parsers import DEFAULT_LIMITS

    limits = replace(DEFAULT_LIMITS, max_title_chars=20)
    lines = numbered("A Title Longer Than Twenty Characters", ABSTRACT, "Short Title", ABSTRACT)
    records = list(parse_listing(lines, "f.txt", limits))
    assert [(p.title, p.line) for p in papers_of(records)] == [("Short Title", 3)]
    (issue,) = issues_of(records)
    assert issue.line == 1 and "PAPERQA_INGEST_MAX_TITLE_CHARS" in issue.message
