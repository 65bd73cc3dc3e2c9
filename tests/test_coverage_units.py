"""Names in titles and questions, and the coverage decision: pure functions, no model."""

from __future__ import annotations

import math

import pytest

from app.core.names import (
    NameIndex,
    NameMatch,
    asks_about,
    base_name,
    looks_like_a_name,
    name_key,
    question_keys,
    title_names,
)
from app.retrieval.coverage import Coverage, CoverageModel, decide
from app.retrieval.types import CoverageSignals

TITLES = {
    "linformer": "Linformer: Self-Attention with Linear Complexity",
    "swin2": "Swin Transformer V2: Scaling Up Capacity and Resolution",
    "maskgit": "MaskGIT: Masked Generative Image Transformer",
    "trocr": "TrOCR: Transformer-based Optical Character Recognition with Pre-trained Models",
    "diffmask": "VISION DIFFMASK: Faithful Interpretation of Vision Transformers with Differentiable Patch Masking",
    "repq": "RepQ-ViT: Scale Reparameterization for Post-Training Quantization of Vision Transformers",
    "flash2": "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning",
    "shift": "Representation Shift: Unifying Token Compression with FlashAttention",
    "mri": "Brain Tumour Segmentation of MRI Scans with Transformers",
    "vit1": "Vision Transformers (ViT) for Image Classification",
    "vit2": "Pruning ViT Tokens",
    "vit3": "ViT Adapters for Dense Prediction",
    "vit4": "Quantized ViT Inference",
    "vit5": "Distilling ViT Models",
    "scaling": "Scaling: A Study of Model Size",
}


@pytest.fixture(scope="module")
def index() -> NameIndex:
    texts = {pid: title for pid, title in TITLES.items()}
    texts.update({f"other{i}": "We study scaling laws for scaling models." for i in range(10)})
    return NameIndex.build(TITLES, texts, max_papers=4, max_text_share=0.02)


def ids(index: NameIndex, question: str) -> list[str]:
    return sorted({pid for match in index.match(question) for pid in match.paper_ids})


def test_name_key_folds_case_hyphens_spaces_and_signs() -> None:
    assert name_key("Swin V2") == name_key("SwinV2") == name_key("swin-v2") == "swinv2"
    assert name_key("VISION DIFFMASK") == name_key("vision-diffmask") == "visiondiffmask"
    assert name_key("RepQ ViT") == name_key("RepQ-ViT")


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("MaskGIT", True),
        ("TrOCR", True),
        ("kMaX", True),
        ("GPT-4", True),
        ("T5", True),
        ("Pix2Seq", True),
        ("RepQ-ViT", True),
        ("MRI", False),
        ("DETR", False),
        ("Transformer", False),
        ("V2", False),
        ("3D", False),
        ("16x16", False),
        ("4-bit", False),
        ("Machine-Generated", False),
        ("Long-Context", False),
    ],
)
def test_looks_like_a_name(word: str, expected: bool) -> None:
    assert looks_like_a_name(word) is expected


def test_title_names() -> None:
    assert title_names(TITLES["swin2"]) >= {"Swin Transformer V2", "Swin V2", "Swin Transformer"}
    assert "FlashAttention" in title_names(TITLES["flash2"])
    assert "MRI" not in title_names(TITLES["mri"])  # a common acronym, not the title's head
    assert title_names("Big Bird: Transformers for Longer Sequences") == {"Big Bird"}
    assert "BigBird" in title_names("Clinical-Longformer and Clinical-BigBird: long clinical sequences")
    assert "The Need for Speed" not in title_names("The Need for Speed: Pruning Transformers")  # a phrase
    assert base_name("DeiT III") == "DeiT" and base_name("PVT v2") is None  # "PVT" alone is an acronym


def test_question_keys_longest_first() -> None:
    keys = question_keys("What is Swin Transformer V2?")
    assert keys.index("swintransformerv2") < keys.index("swin")


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is Linformer?", ["linformer"]),
        ("how does linformer work", ["linformer"]),
        ("Which paper proposes MaskGIT?", ["maskgit"]),
        ("What does TrOCR do?", ["trocr"]),
        ("What is Swin V2?", ["swin2"]),
        ("Tell me about SwinV2", ["swin2"]),
        ("vision-diffmask", ["diffmask"]),
        ("RepQ ViT", ["repq"]),
        ("FlashAttention", ["flash2", "shift"]),  # a name two titles share: both
        ("What is the best recipe for chocolate chip cookies?", []),
        ("Which vision transformer reads brain MRI scans?", []),  # MRI is not a name
        ("ViT", []),  # shared by more than 4 titles: generic
        ("What are the scaling laws of language models?", []),  # a common word of the abstracts
    ],
)
def test_names_in_questions(index: NameIndex, question: str, expected: list[str]) -> None:
    assert ids(index, question) == sorted(expected)


def test_asks_about_the_name_or_merely_mentions_it() -> None:
    match = NameMatch("Hiformer", ("h",))
    assert asks_about("What is Hiformer?", match)
    assert asks_about("what problem does hiformer solve", match)
    assert asks_about("Hiformer", match)
    assert not asks_about("Where was Hiformer deployed, and how large was the engagement gain?", match)


RULES = CoverageModel(kind="rules", relevance_floor=0.4, max_absent=0.3, min_share=0.8, min_bm25=0.4)
LOGISTIC = CoverageModel(kind="logistic", weights=(2.0, 3.0, 1.0, -2.0, 0.0), bias=-2.0, min_probability=0.5)


@pytest.mark.parametrize(
    ("signals", "covered", "reason"),
    [
        (CoverageSignals(dense=0.1, named=("p",)), True, "named"),
        (CoverageSignals(dense=0.5, absent=0.1), True, "similar"),
        (CoverageSignals(dense=0.5, absent=0.6), False, "the corpus lacks the question's own terms"),
        (CoverageSignals(dense=0.3, share=0.9, bm25=0.5, absent=0.0), True, "terms"),
        (CoverageSignals(dense=0.3, share=0.9, bm25=0.2, absent=0.0), False, "no paper is close enough"),
        (CoverageSignals(dense=0.3, share=0.5, bm25=0.9, absent=0.5), False, "no paper is close enough"),
    ],
)
def test_rules(signals: CoverageSignals, covered: bool, reason: str) -> None:
    decision = decide(signals, RULES)
    assert (decision.covered, decision.reason) == (covered, reason)


def test_logistic() -> None:
    # z = -2 + 2*0.5 + 3*0.6 + 1*0.3 - 2*0.0 = 1.1 -> p 0.75
    good = CoverageSignals(dense=0.5, share=0.6, bm25=0.3, absent=0.0)
    assert LOGISTIC.probability(good) == pytest.approx(1 / (1 + math.exp(-1.1)))
    assert decide(good, LOGISTIC) == Coverage(True, "signals")
    # the same question with 60 % of its terms in no chunk: z = 1.1 - 1.2 = -0.1, p 0.475 -> refused
    refused = decide(CoverageSignals(dense=0.5, share=0.6, bm25=0.3, absent=0.6), LOGISTIC)
    assert not refused.covered and "p=0.48" in refused.reason
    assert decide(CoverageSignals(dense=0.0, named=("p",)), LOGISTIC).reason == "named"


def test_a_signal_left_out() -> None:
    named = CoverageSignals(dense=0.1, named=("p",))
    assert not decide(named, RULES.without("names")).covered
    assert decide(CoverageSignals(dense=0.5, absent=0.6), RULES.without("absent")).covered
    weak = CoverageSignals(dense=0.5, share=0.6, bm25=0.3, absent=0.6)
    assert decide(weak, LOGISTIC.without("absent")).covered  # the absent terms no longer count
    assert not decide(CoverageSignals(dense=0.9), RULES, has_hits=False).covered


def test_the_settings_build_the_model() -> None:
    from tests.helpers import hermetic_settings

    settings = hermetic_settings(coverage_model="rules", relevance_floor=0.3, coverage_weight_share=9.0)
    model = CoverageModel.from_settings(settings)
    assert model.kind == "rules" and model.relevance_floor == 0.3 and model.weights[1] == 9.0


def test_the_dense_gap_weighs_in() -> None:
    # z = -2 + 2*0.5 + 10*0.05 = -0.5 -> refused; a paper standing 0.2 above the rest: z = 1 -> covered
    model = CoverageModel(kind="logistic", weights=(2.0, 0.0, 0.0, 0.0, 10.0), bias=-2.0)
    assert not decide(CoverageSignals(dense=0.5, dense_gap=0.05), model).covered
    assert decide(CoverageSignals(dense=0.5, dense_gap=0.2), model).covered
    assert not decide(CoverageSignals(dense=0.5, dense_gap=0.2), model.without("dense_gap")).covered


def test_dense_gap() -> None:
    from app.retrieval.fusion import dense_gap

    assert dense_gap({}) == 0.0
    # one paper well above the next four (the rest do not count)
    assert dense_gap({"a": 0.6, "b": 0.3, "c": 0.3, "d": 0.2, "e": 0.2, "f": 0.5, "g": 0.1}) == pytest.approx(
        0.6 - (0.5 + 0.3 + 0.3 + 0.2) / 4
    )
    # papers about equally close: no gap
    assert dense_gap({"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5, "e": 0.5}) == pytest.approx(0.0)
    # fewer than five papers: the missing ones count 0
    assert dense_gap({"a": 0.4, "b": 0.4}) == pytest.approx(0.4 - 0.4 / 4)


def rows_of(samples: list[tuple[str, dict[str, float]]]) -> list[dict]:
    base = {"dense": 0.5, "share": 0.5, "bm25": 0.5, "absent": 0.0, "dense_gap": 0.0, "named": []}
    return [{"type": t, "signals": {**base, **s}, "ranked_titles": ["x"]} for t, s in samples]


def test_the_logistic_fit_finds_a_signal_on_a_small_scale() -> None:
    """Only dense_gap (a hundredth apart) tells the classes apart: the fit separates them, and the
    weights it returns, on the signals' own scale (it fits standardised ones), decide as it did."""
    from eval.coverage import fit_logistic, outcome_of

    rows = rows_of(
        [("lookup", {"dense_gap": 0.030 + 0.0002 * i, "dense": 0.3 + 0.05 * (i % 5)}) for i in range(20)]
        + [
            ("out_of_scope", {"dense_gap": 0.020 + 0.0002 * i, "dense": 0.3 + 0.05 * (i % 5)})
            for i in range(20)
        ]
    )
    model, outcome = fit_logistic(rows)
    assert outcome.answerable_refused == 0 and outcome.out_of_scope_refused == 20
    assert model.weights[4] > 10 * abs(model.weights[0])  # the gap carries the decision
    assert outcome_of(rows, model) == outcome  # the returned weights decide as the fit did


def test_a_follow_up_is_covered_when_its_own_words_are() -> None:
    from app.retrieval.coverage import coverage_of
    from app.retrieval.types import PaperHit, RetrievalResult

    good = CoverageSignals(dense=0.5, share=0.6, bm25=0.3, absent=0.0)  # p 0.75 (test_logistic)
    weak = CoverageSignals(dense=0.5, share=0.6, bm25=0.3, absent=0.6)  # p 0.475
    hits = [PaperHit("p", "P", 1.0, (), {})]

    def result(signals: CoverageSignals, *alone: CoverageSignals, found: bool = True) -> RetrievalResult:
        return RetrievalResult(hits if found else [], "hybrid", ["q"], 0.5, signals, tuple(alone))

    assert coverage_of(result(good), LOGISTIC) == Coverage(True, "signals")
    assert coverage_of(result(weak, good), LOGISTIC) == Coverage(True, "signals (the follow-up's own words)")
    assert coverage_of(result(good, weak), LOGISTIC) == Coverage(True, "signals")
    refused = coverage_of(result(weak, weak), LOGISTIC)
    assert not refused.covered and "p=0.48" in refused.reason  # the standalone query's reason
    assert not coverage_of(result(weak, good, found=False), LOGISTIC).covered
