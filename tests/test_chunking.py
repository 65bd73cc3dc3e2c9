"""Chunks fit the embedder's window, carry the title, and lose no text.

The window is checked with the embedder's own tokenizer exactly as sentence-transformers calls it
(``[CLS]`` and ``[SEP]`` included, truncation off), not with the counter the splitter is given, so
that a disagreement between the two would show up here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.records import Paper, title_id
from app.core.settings import EMBED_WINDOW
from ingest.chunking import chunk_id, chunk_paper, embed_text, make_splitter
from ingest.parsers import corpus_files, read_file
from ingest.pipeline import IngestSummary, dedupe

pytestmark = pytest.mark.slow

# (chunk_size, chunk_overlap): the default, and the largest size the settings allow.
CONFIGS = [pytest.param(None, None, id="default"), pytest.param(254, 0, id="254-no-overlap")]


@pytest.fixture(scope="module")
def corpus_papers(corpus_dir: Path) -> list[Paper]:
    records = (r for path in corpus_files([corpus_dir]) for r in read_file(path))
    papers = list(dedupe(records, IngestSummary()))
    assert len(papers) == 586
    return papers


@pytest.fixture(scope="module")
def window_length():
    """Wordpieces the embedder sees for a text, [CLS]/[SEP] included, nothing truncated: the
    model folder's own tokenizer, loaded as sentence-transformers loads it (transformers)."""
    from transformers import AutoTokenizer

    from app.core.embeddings import embed_model_path
    from app.core.settings import Settings

    tokenizer = AutoTokenizer.from_pretrained(embed_model_path(Settings(_env_file=None)))

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    return length


def settings_for(settings_factory, chunk_size, chunk_overlap):
    overrides = {}
    if chunk_size is not None:
        overrides = {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap}
    return settings_factory(**overrides)


def occurrences(text: str, piece: str) -> list[int]:
    found, at = [], text.find(piece)
    while at >= 0:
        found.append(at)
        at = text.find(piece, at + 1)
    return found


def assert_covers(abstract: str, texts: list[str], whole_words: bool = True) -> None:
    """The chunks are pieces of the abstract that follow one another with no gap (overlap allowed),
    from its first character to its last: no text is lost.

    A piece can occur more than once (an abstract may repeat a sentence): each chunk is placed at
    the last occurrence that starts inside, or right after, the previous chunk.
    """
    previous_start, previous_end = -1, 0
    for index, text in enumerate(texts):
        assert text and text.strip() == text, repr(text)
        places = [
            at
            for at in occurrences(abstract, text)
            if previous_start < at and abstract[previous_end:at].strip() == ""
        ]
        assert places, (
            f"chunk {index} does not continue chunk {index - 1} (text lost in between, or the chunk "
            f"is not a piece of the abstract): {text[:80]!r}; after {abstract[previous_end - 40 : previous_end]!r}"
        )
        previous_start = max(places)
        previous_end = max(previous_end, previous_start + len(text))
    assert abstract[previous_end:].strip() == "", f"tail lost: {abstract[previous_end:][:80]!r}"
    if whole_words:  # the plain statement of the same thing: no word of the abstract is missing
        words = set(" ".join(texts).split())
        assert [w for w in abstract.split() if w not in words] == []


@pytest.mark.parametrize(("chunk_size", "chunk_overlap"), CONFIGS)
def test_corpus_chunks_fit_window_start_with_title_and_lose_nothing(
    corpus_papers,
    settings_factory,
    count_tokens,
    window_length,
    embed_model,
    chunk_size,
    chunk_overlap,
):
    settings = settings_for(settings_factory, chunk_size, chunk_overlap)
    splitter = make_splitter(count_tokens, settings.chunk_size, settings.chunk_overlap)
    all_texts: list[str] = []
    longest = 0
    n_chunks = 0
    for paper in corpus_papers:
        nodes = chunk_paper(paper, splitter)
        assert nodes, paper.title
        n_chunks += len(nodes)
        for index, node in enumerate(nodes):
            text = embed_text(node)
            assert text == f"{paper.title}\n{node.text}"
            assert text.startswith(paper.title)
            length = window_length(text)
            assert length <= EMBED_WINDOW, (paper.title, index, length)
            # The splitter's counter agrees with the embedder's tokenizer (+ [CLS] and [SEP]).
            assert len(count_tokens(text)) + 2 == length
            longest = max(longest, length)
            assert node.id_ == chunk_id(paper, index)
            assert node.metadata["paper_id"] == paper.id
            assert node.metadata["title"] == paper.title
            assert node.metadata["content_hash"] == paper.content_hash
            assert (node.metadata["chunk_index"], node.metadata["n_chunks"]) == (index, len(nodes))
            all_texts.append(text)
        assert_covers(paper.abstract, [n.text for n in nodes])
    assert n_chunks > len(corpus_papers)  # some abstracts do need more than one chunk
    assert longest <= settings.chunk_size + 2

    # The same texts as the embedder itself prepares them (truncating at its window): none is cut.
    assert embedder_input_lengths(embed_model, all_texts) == [window_length(t) for t in all_texts]


def embedder_input_lengths(embed_model, texts: list[str]) -> list[int]:
    """Token counts the model really receives, for either embedding backend."""
    if hasattr(embed_model, "_tokenizer"):  # onnx-int8: tokenizers, truncation at the window
        return [len(e.ids) for e in embed_model._tokenizer.encode_batch(texts)]
    batch = embed_model._model.preprocess(texts)  # torch: sentence-transformers
    return batch["attention_mask"].sum(dim=1).tolist()


def test_chunking_is_deterministic(corpus_papers, count_tokens):
    splitter = make_splitter(count_tokens, 200, 32)
    paper = max(corpus_papers, key=lambda p: len(p.abstract))
    first = [(n.id_, n.text) for n in chunk_paper(paper, splitter)]
    again = [(n.id_, n.text) for n in chunk_paper(paper, splitter)]
    assert first == again and len(first) > 1


def synthetic_abstract(n_words: int) -> str:
    vocabulary = [
        "transformer",
        "attention",
        "pluralistic",
        "inpainting",
        "quantization",
        "tokenizer",
        "wordpiece",
        "self-supervised",
        "pre-training",
        "diffusion",
        "convolution",
        "état-de-l'art",
        "3D-aware",
        "x^2+y^2=z^2",
        "µ-law",
        "H₂O",
        "naïve",
        "anti-aliasing",
        "state-of-the-art",
        "benchmark",
    ]
    words = []
    for i in range(n_words):
        word = vocabulary[(i * 7) % len(vocabulary)]
        if i % 3 == 0:
            word += str(i)  # numbered words: no two chunks alike
        if i % 23 == 22:
            word += "."
        elif i % 11 == 10:
            word += ","
        words.append(word)
    # One sentence with no punctuation at all for ~400 words, and one 'word' with no spaces.
    words[1000:1400] = [f"unpunctuated{i}" for i in range(400)]
    words[2000] = "ACGT" * 30
    return " ".join(words)


@pytest.mark.parametrize(("chunk_size", "chunk_overlap"), CONFIGS)
def test_very_long_abstract_splits_into_many_chunks_within_window(
    settings_factory, count_tokens, window_length, chunk_size, chunk_overlap
):
    settings = settings_for(settings_factory, chunk_size, chunk_overlap)
    abstract = synthetic_abstract(3000)
    assert len(abstract.split()) == 3000
    title = "A Very Long Abstract: Stress-Testing the Splitter on 3000 Words"
    paper = Paper(id=title_id(title), title=title, abstract=abstract, source="s.jsonl", line=1)
    nodes = chunk_paper(paper, make_splitter(count_tokens, settings.chunk_size, settings.chunk_overlap))
    assert len(nodes) >= len(count_tokens(abstract)) // settings.chunk_size
    assert len(nodes) > 15
    for node in nodes:
        text = embed_text(node)
        assert text.startswith(title + "\n")
        assert window_length(text) <= EMBED_WINDOW
        assert len(count_tokens(text)) + 2 == window_length(text)
    assert len({n.id_ for n in nodes}) == len(nodes)
    assert_covers(abstract, [n.text for n in nodes])


def test_word_longer_than_a_chunk_is_cut_but_fits_window(settings_factory, count_tokens, window_length):
    """A 'word' of 2000 characters and ~800 wordpieces cannot stay whole; it must still fit.

    (BERT's tokenizer turns any word over 100 characters into one [UNK]; punctuation inside the
    word is what makes it long in wordpieces.)
    """
    settings = settings_factory()
    monster = "-".join(f"acgt{i % 10}" for i in range(330))
    assert " " not in monster and len(count_tokens(monster)) > 2 * EMBED_WINDOW
    abstract = f"We sequence a genome. The read is {monster} and it is long. That is all."
    title = "Reads Longer Than the Window"
    paper = Paper(id=title_id(title), title=title, abstract=abstract, source="s.jsonl", line=1)
    nodes = chunk_paper(paper, make_splitter(count_tokens, settings.chunk_size, settings.chunk_overlap))
    assert len(nodes) > 1
    for node in nodes:
        assert embed_text(node).startswith(title + "\n")
        assert window_length(embed_text(node)) <= EMBED_WINDOW
    assert_covers(abstract, [n.text for n in nodes], whole_words=False)


def test_smallest_allowed_chunk_size_handles_the_bundled_corpus(
    corpus_papers, settings_factory, count_tokens, window_length
):
    settings = settings_factory(chunk_size=64, chunk_overlap=0)
    splitter = make_splitter(count_tokens, settings.chunk_size, settings.chunk_overlap)
    for paper in corpus_papers:
        for node in chunk_paper(paper, splitter):
            assert window_length(embed_text(node)) <= EMBED_WINDOW
