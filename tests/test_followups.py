"""Follow-ups: the papers the previous answer cited, and whether a follow-up asks about them or
for other papers (``app.answering.followups``); how the answer's papers follow from that
(``select_papers``). Pure functions, fast tier."""

from __future__ import annotations

import pytest

from app.answering.compose import select_papers
from app.answering.followups import about_previous, asks_for_other, previous_papers, refers_back
from app.core.names import NameIndex
from tests.test_faithful_units import evidence

TITLES = [
    ("p-mega", "MEGABYTE: Predicting Million-byte Sequences with Multiscale Transformers"),
    ("p-icl", "What learning algorithm is in-context learning? Investigations with linear models"),
    ("p-vit", "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale"),
    ("p-vivit", "ViViT: A Video Vision Transformer"),
]


def conversation(answer: str, question: str = "And then?") -> list[dict[str, str]]:
    return [
        {"role": "user", "content": "Some question"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": question},
    ]


@pytest.mark.parametrize(
    "question",
    [
        "Has anyone made a causal version of that?",
        "Which other papers do this?",
        "Which paper originally defined that language?",
        "Is there an open-source toolkit that ships it?",
        "Is there something similar for robots?",
        "Are there any that use mixed precision?",
        "What else has come out of that line?",
        "Has it been adapted for graphs?",
        "And for scene text, end to end?",
        "What about real images?",
        "Has someone pretrained models like this on clinical text?",
        "Anything like that for speech recognition?",
        "That only varies the width, right? Which model adapts depth and width at once?",
        "Did a later paper generalise that encoding?",
    ],
)
def test_asks_for_other(question: str) -> None:
    assert asks_for_other(question) and not refers_back(question)


@pytest.mark.parametrize(
    "question",
    [
        "How does it split the work inside those patches?",  # "the work" is no request for work
        "What loss does it train with, and what dataset are the results reported on?",
        "How does the single model know whether it should do segmentation?",
        "Which video benchmarks did it get state-of-the-art results on?",
        "Does it change anything at inference time?",
        "By how much does the model beat Swin?",
        "How does it get all those modalities into one model?",  # "one model": no request
        "How many tasks did a single model of theirs handle?",
        "What model does it use as its backbone?",  # asks about "it", not for a model
        "What method do the authors propose for that?",
    ],
)
def test_refers_back(question: str) -> None:
    assert refers_back(question) and not asks_for_other(question)


def test_choosing_among_papers_is_no_back_reference() -> None:
    assert not refers_back("Which of them uses log2 quantizers?")
    assert not refers_back("What one of these is fastest?")


def test_no_back_reference_is_neither() -> None:
    assert not refers_back("What accuracy on ImageNet?")
    assert not asks_for_other("What accuracy on ImageNet?")


def test_previous_papers_by_title_short_name_or_name_index() -> None:
    names = NameIndex(papers_by_key={"vivit": ("p-vivit",)}, spelling={"vivit": "ViViT"})
    # a title holding a "?", a short name, a name only the name index knows; order as cited
    answer = (
        "What learning algorithm is in-context learning? Investigations with linear models [1] "
        "studies regression. MEGABYTE [2] segments bytes into patches. ViViT [3] does video."
    )
    assert previous_papers(conversation(answer), names, TITLES[:2]) == ["p-icl", "p-mega", "p-vivit"]
    # the name closest to the marker, not one earlier in the sentence; whole words only
    answer = "Unlike ViViT, MEGABYTE [1] uses patches. MEGABYTES [2] are many."
    assert previous_papers(conversation(answer), names, TITLES) == ["p-mega"]
    # a name in another sentence does not count for a marker
    assert previous_papers(conversation("MEGABYTE is big. It does patches [1]."), NameIndex(), TITLES) == []


def test_previous_papers_needs_an_answer() -> None:
    assert previous_papers([{"role": "user", "content": "MEGABYTE [1]?"}], NameIndex(), TITLES) == []
    assert previous_papers(conversation("Nothing found."), NameIndex(), TITLES) == []


def test_previous_papers_of_an_answer_without_markers() -> None:
    """Titles or short names of ``titles`` mentioned anywhere, in the order mentioned; whole words."""
    names = NameIndex(papers_by_key={"vivit": ("p-vivit",)}, spelling={"vivit": "ViViT"})
    answer = (
        "That is MEGABYTE, unlike An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale."
    )
    assert previous_papers(conversation(answer), names, TITLES) == ["p-mega", "p-vit"]
    assert previous_papers(conversation("MEGABYTES and ViViTs."), names, TITLES) == []


def test_previous_papers_without_markers_by_the_first_name_of_the_first_sentence() -> None:
    """A paper retrieval did not find again is still the one discussed when the answer opens with
    its name; names further on are what the answer talks about, not the paper itself."""
    names = NameIndex(
        papers_by_key={"matformer": ("p-mat",), "era5": ("p-cra5",), "ladcast": ("p-lad",)},
        spelling={"matformer": "MatFormer", "era5": "ERA5", "ladcast": "LaDCast"},
    )
    assert previous_papers(conversation("MatFormer nests FFN blocks."), names, TITLES) == ["p-mat"]
    assert previous_papers(conversation("LaDCast compresses ERA5 fields."), names, TITLES) == ["p-lad"]
    assert previous_papers(conversation("It nests FFN blocks. MatFormer is small."), names, TITLES) == []
    # with a retrieved title mentioned too, both, in the order mentioned
    assert previous_papers(conversation("MEGABYTE and MatFormer both do this."), names, TITLES) == [
        "p-mega",
        "p-mat",
    ]


def test_about_previous() -> None:
    assert about_previous("What loss does it use?", ["b"], ["a", "b"]) == "b"
    assert about_previous("What loss does it use?", ["c"], ["a", "b"]) is None  # not found again
    assert about_previous("Has anyone improved it?", ["b"], ["a", "b"]) is None  # asks for another
    assert about_previous("What loss does it use?", [], ["a", "b"]) is None  # no previous answer


def test_select_papers_in_a_follow_up() -> None:
    found = [evidence("a", "A: x", 0.9), evidence("b", "B: x", 0.7), evidence("c", "C: x", 0.5)]
    ids = lambda chosen: [e.paper_id for e in chosen]  # noqa: E731
    # about the paper just discussed: that paper alone, wherever retrieval ranked it
    assert ids(select_papers("What loss does it use?", found, [], 0.7, 0.7, previous=["b"])) == ["b"]
    # ...unless another paper's evidence is far stronger (its own words point elsewhere)
    assert ids(
        select_papers("What loss does it use?", found, [], 0.7, 0.7, previous=["c"], focus_ratio=0.6)
    ) == ["a", "b"]
    # "Which of them ...": the usual rules
    assert ids(select_papers("Which of them does x?", found, [], 0.7, 0.7, previous=["b", "c"])) == ["a", "b"]
    # asking for other work: without the papers just cited
    assert ids(select_papers("Which other papers do x?", found, [], 0.5, 0.85, previous=["a"])) == ["b", "c"]
    assert ids(select_papers("Has anyone done x?", found, [], 0.5, 0.85, previous=["a"])) == ["b"]
    # ...unless nothing else was found
    assert ids(select_papers("Has anyone done x?", found[:1], [], 0.5, 0.85, previous=["a"])) == ["a"]
    # a paper named in the question still comes first
    assert ids(select_papers("What about C?", found, ["c"], 0.5, 0.85, previous=["a"])) == ["c"]
    # no previous answer: as before
    assert ids(select_papers("What loss does it use?", found, [], 0.7, 0.7)) == ["a", "b"]


def test_answer_query_and_context_for(build_settings) -> None:
    from app.answering.condense import context_for
    from app.retrieval.queries import answer_query

    messages = conversation("Linformer [1] projects keys and values.", "What does it project?")
    assert answer_query(messages) == "What does it project? Linformer [1] projects keys and values."
    assert answer_query([{"role": "user", "content": "What is Linformer?"}]) is None  # no answer yet
    settings = build_settings()
    assert context_for(messages, settings) == [(answer_query(messages), settings.followup_answer_weight)]
    assert context_for(messages, build_settings(followup_answer_weight=0.0)) == []
    assert context_for(messages, build_settings(condense_mode="off")) == []
    choice = conversation("Linformer [1] and Performer [2] are linear.", "Which of them uses kernels?")
    assert context_for(choice, settings) == []


def test_the_answer_before_a_follow_up_ranks_but_names_and_covers_nothing(contract_services) -> None:
    """The follow-up alone finds nothing it names; joined to the answer before it, the paper that
    answer was about ranks first, while the coverage signals' similarity and the names asked for
    stay the follow-up's own (the answer's words are the corpus's: any follow-up would look covered)."""
    retriever = contract_services.retriever
    question = "What share do they hide?"
    context = [(f"{question} Unlike Linformer, they mask voxels of lidar point clouds.", 1.0)]
    plain = retriever.search([question], "hybrid", 3)
    joined = retriever.search([question], "hybrid", 3, None, context)
    assert joined.hits[0].paper_id == "lidar-mae"
    assert joined.signals.dense == plain.signals.dense
    assert joined.signals.named == plain.signals.named == ()
