"""Faithful answers, the pure parts: sentences with offsets, evidence scoring, the answer layout
and paper selection, the claim check and the trimming of cut replies. No model."""

from __future__ import annotations

import pytest

from app.answering.claims import (
    AnswerSentence,
    answer_sentences,
    facts,
    judge,
    missing_facts,
    trim_to_complete,
    without_markers,
)
from app.answering.compose import (
    asks_for_one,
    cite,
    layout,
    paper_line,
    select_papers,
    short_name,
    third_person,
)
from app.answering.evidence import (
    PaperEvidence,
    Sentence,
    Weights,
    choose,
    has_number,
    lexical_share,
    question_focus,
    score_sentence,
)
from app.core.text import sentence_spans, split_sentences

ABSTRACT = (
    "Vision transformers are hard to quantize, e.g. because of post-Softmax activations. "
    "We propose RepQ-ViT, as in Smith et al. (2021), vs. prior PTQ methods. "
    "Fig. 2 shows the scale reparameterization. "
    "On ImageNet, 4-bit RepQ-ViT reaches 75.6% top-1 accuracy, i.e. 0.5 points below full precision."
)


# --- sentences ----------------------------------------------------------------------------------
def test_sentences_survive_abbreviations_citations_figures_and_decimals() -> None:
    assert split_sentences(ABSTRACT) == [
        "Vision transformers are hard to quantize, e.g. because of post-Softmax activations.",
        "We propose RepQ-ViT, as in Smith et al. (2021), vs. prior PTQ methods.",
        "Fig. 2 shows the scale reparameterization.",
        "On ImageNet, 4-bit RepQ-ViT reaches 75.6% top-1 accuracy, i.e. 0.5 points below full precision.",
    ]


def test_sentence_offsets_point_into_the_text() -> None:
    for start, end in sentence_spans(ABSTRACT):
        assert ABSTRACT[start:end] == ABSTRACT[start:end].strip() and ABSTRACT[start:end]
    assert split_sentences("J. Smith and A. B. Jones agree. It works!\nNext line") == [
        "J. Smith and A. B. Jones agree.",
        "It works!",
        "Next line",
    ]


# --- evidence scoring -------------------------------------------------------------------------------
def test_question_focus() -> None:
    assert question_focus("How many parameters does LightHuBERT cut?").wants_number
    assert question_focus("What top-1 accuracy does RepQ-ViT reach on ImageNet?").wants_number
    assert not question_focus("Which papers quantize vision transformers after training?").wants_number
    assert question_focus("Where did UniBuc-NLP place at WMT19?").names == ("unibuc-nlp", "wmt19")


def test_scores_add_up_the_parts() -> None:
    focus = question_focus("What accuracy does RepQ-ViT reach?")
    weights = Weights(dense=1.0, lexical=0.5, number=0.2, name=0.1)
    text = "RepQ-ViT reaches 75.6% top-1 accuracy."
    assert has_number(text) and not has_number("no digits here")
    assert score_sentence(0.6, 0.5, text, focus, weights) == pytest.approx(0.6 + 0.25 + 0.2 + 0.1)
    assert score_sentence(0.6, 0.5, "No number, no name.", focus, weights) == pytest.approx(0.85)
    assert lexical_share({"quantiz": 3.0, "vision": 1.0}, {"quantiz"}) == pytest.approx(0.75)
    assert lexical_share({}, {"x"}) == 0.0


def test_choose_the_best_and_near_ties() -> None:
    assert choose([0.2, 0.9, 0.85, 0.1], max_sentences=2, second_ratio=0.9) == (1, 2)
    assert choose([0.2, 0.9, 0.5], max_sentences=2, second_ratio=0.9) == (1,)
    assert choose([], 2, 0.9) == ()


def test_choose_adds_the_sentence_that_answers_the_rest_of_the_question() -> None:
    """ "What accuracy, and on which benchmark?": the second sentence counts only the question's
    terms the first lacks, so the one naming the benchmark beats a near-copy of the first."""
    terms = [{"accuracy"}, {"accuracy"}, {"benchmark"}]
    scores = [1.0, 0.95, 0.6]

    def marginal(i: int, covered: set[str]) -> float:
        return 0.5 + 0.4 * len(terms[i] - covered)

    assert choose(scores, 3, 0.5, marginal, terms.__getitem__) == (0, 2, 1)
    assert choose(scores, 2, 0.5, marginal, terms.__getitem__) == (0, 2)
    assert choose(scores, 3, 0.95, marginal, terms.__getitem__) == (0,)


def evidence(
    paper_id: str, title: str, relevance: float, text: str = "We quantize transformers."
) -> PaperEvidence:
    return PaperEvidence(
        paper_id, title, text, (Sentence(text, 0, len(text)),), (relevance,), (0,), ((1.0,),)
    )


# --- layout and selection -----------------------------------------------------------------------------
def test_short_names_and_third_person() -> None:
    assert short_name("RepQ-ViT: Scale Reparameterization for PTQ") == "RepQ-ViT"
    assert short_name("Dual input stream transformer for eye-tracking line assignment").startswith(
        "Dual input"
    )
    assert (
        third_person("In this paper, we propose our method to us.")
        == "The authors propose their method to them."
    )
    assert cite("It works.", 2) == "It works [2]." and cite("It works", 1) == "It works [1]."


def test_paper_line_and_layout() -> None:
    e = evidence("p", "RepQ-ViT: Scale Reparameterization", 0.9, "We propose RepQ-ViT. It reaches 75.6%.")
    e = PaperEvidence(
        "p",
        e.title,
        e.abstract,
        (Sentence("We propose RepQ-ViT.", 0, 20), Sentence("It reaches 75.6%.", 21, 38)),
        (0.9, 0.85),
        (0, 1),
        ((1.0,), (1.0,)),
    )
    assert paper_line(e, 3) == "RepQ-ViT [3]: The authors propose RepQ-ViT. It reaches 75.6% [3]."
    assert layout(["a", "b"]) == "- a\n- b" and layout(["a"]) == "a"


@pytest.mark.parametrize(
    ("question", "one"),
    [
        ("Which paper proposes a k-means mask transformer?", True),
        ("Is there a paper that corrects vertical drift in eye tracking?", True),
        ("Which work makes privacy-preserving evaluation of an LLM practical?", True),
        ("Which papers quantize vision transformers after training?", False),
        ("What work is there on handwriting recognition with transformers?", False),
        ("List the survey papers on state space models.", False),
        ("cross-view geo-localization", False),
    ],
)
def test_asks_for_one(question: str, one: bool) -> None:
    assert asks_for_one(question) is one


def test_select_papers() -> None:
    found = [evidence("a", "A: x", 0.9), evidence("b", "B: x", 0.7), evidence("c", "C: x", 0.5)]
    assert [e.paper_id for e in select_papers("Which papers do x?", found, [], 0.7, 0.85)] == ["a", "b"]
    assert [e.paper_id for e in select_papers("Which paper does x?", found, [], 0.7, 0.85)] == ["a"]
    assert [e.paper_id for e in select_papers("x keyword query", found, [], 0.7, 0.85)] == ["a"]
    assert [e.paper_id for e in select_papers("x keyword query", found, [], 0.7, 0.75)] == ["a", "b"]
    assert [e.paper_id for e in select_papers("What is C?", found, ["c"], 0.85)] == ["c"]
    empty = PaperEvidence("d", "D", "", (), (), ())
    assert select_papers("x", [empty], [], 0.85) == []


# --- the claim check ----------------------------------------------------------------------------------
def test_answer_sentences_and_markers() -> None:
    text = "RepQ-ViT [1]: It reaches 75.6%. Another one [2][3].\n- Third [1]."
    sentences = answer_sentences(text)
    assert [s.markers for s in sentences] == [(1,), (2, 3), (1,)]
    assert without_markers("It works [1][2].") == "It works."


def test_facts_are_numbers_names_and_quoted_terms() -> None:
    assert facts('RepQ-ViT [1]: 4-bit models reach 75.6% on ImageNet with "log2 quantizers" and BERT.') == [
        "log2 quantizers",
        "4",
        "75.6",
        "RepQ-ViT",
        "ImageNet",
        "log2",
        "BERT",
    ]
    assert facts("The authors propose a method [1].") == []
    assert facts("It runs 1,000 steps on a GPU [1].") == ["1000"]


def test_missing_facts() -> None:
    abstract = "RepQ-ViT reaches 75.6% top-1 with 4-bit weights; it trains for 1,000 steps."
    assert missing_facts("RepQ-ViT reaches 75.6% [1].", [abstract]) == []
    assert missing_facts("RepQ-ViT reaches 76.5% [1].", [abstract]) == ["76.5"]  # a changed number
    assert missing_facts("NoisyQuant reaches 75.6% [1].", [abstract]) == ["NoisyQuant"]  # an invented name
    assert missing_facts("It trains for 1000 steps [1].", [abstract]) == []
    assert missing_facts("It reaches 5% [1].", [abstract]) == ["5"]  # "5" only inside "75.6"


def sentence(text: str) -> AnswerSentence:
    return answer_sentences(text)[0]


def test_judge() -> None:
    abstract = ["RepQ-ViT\nRepQ-ViT reaches 75.6% top-1 accuracy."]
    assert judge(sentence("RepQ-ViT reaches 75.6% [1]."), 3, abstract, 0.92, 0.6).supported
    assert judge(sentence("It reaches 75.6%."), 3, abstract, 0.9, 0.6).reason == "it cites no retrieved paper"
    assert (
        judge(sentence("It reaches 75.6% [7]."), 3, abstract, 0.9, 0.6).reason
        == "it cites no retrieved paper"
    )
    changed = judge(sentence("RepQ-ViT reaches 80.1% [1]."), 3, abstract, 0.9, 0.6)
    assert not changed.supported and changed.reason == "“80.1” is not in the cited abstract"
    far = judge(sentence("Cats like warm windowsills [1]."), 3, abstract, 0.12, 0.6)
    assert not far.supported and "similarity 0.12" in far.reason
    assert judge(
        sentence("Cats like warm windowsills [1]."), 3, abstract, None, 0.6
    ).supported  # not measured


@pytest.mark.parametrize(
    ("reply", "kept", "cut"),
    [
        ("It works [1]. It also scales [2].", "It works [1]. It also scales [2].", False),
        ("It works [1]. It also scales to", "It works [1].", True),
        ("It works [1]. And DopQ-ViT [4] (", "It works [1].", True),
        ("It works [1]", "It works [1]", False),
        ("half a sentence", "", True),
        ("", "", False),
    ],
)
def test_trim_to_complete(reply: str, kept: str, cut: bool) -> None:
    assert trim_to_complete(reply) == (kept, cut)


def test_links_and_code_availability_are_never_evidence() -> None:
    from app.answering.evidence import is_boilerplate

    focus = question_focus("What is Visformer?")
    assert is_boilerplate("The code is available at https://github.com/danczs/Visformer.")
    assert is_boilerplate("Code and models will be made publicly available.")
    assert not is_boilerplate("Visformer outperforms DeiT on ImageNet with fewer FLOPs.")
    assert score_sentence(0.9, 1.0, "Our code is publicly released.", focus, Weights()) == 0.0


def test_a_reworded_copy_is_as_close_as_its_source() -> None:
    from app.answering.claims import claim_content, text_similarity

    source = "We propose RepQ-ViT, a post-training quantization framework for vision transformers."
    claim = claim_content(
        "RepQ-ViT [1]: The authors propose RepQ-ViT, a post-training quantization framework for vision transformers.",
        ["RepQ-ViT"],
    )
    assert text_similarity(claim, [source]) > 0.85
    assert text_similarity("Cats sleep most of the day.", [source]) < 0.4
