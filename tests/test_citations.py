"""The citation guarantee on hostile model output: no marker or title that is not a source survives."""

from __future__ import annotations

import pytest

from app.answering.citations import CitationStream, expand_group, finalize, looks_like_title, match_title

TITLES = [
    "RepQ-ViT: Scale Reparameterization for Post-Training Quantization of Vision Transformers",
    "NoisyQuant: Noisy Bias-Enhanced Post-Training Activation Quantization for Vision Transformers",
    "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
]


def test_valid_markers_renumbered_in_first_cited_order() -> None:
    out = finalize("NoisyQuant adds noise [2]. RepQ-ViT reparameterizes [1]. Again [2].", TITLES)
    assert out.text == "NoisyQuant adds noise [1]. RepQ-ViT reparameterizes [2]. Again [1]."
    assert out.cited == [1, 0]
    assert out.dropped == 0


def test_out_of_range_marker_removed_and_counted() -> None:
    out = finalize("This is proven [99]. And this [0].", TITLES)
    assert "[99]" not in out.text and "[0]" not in out.text
    assert out.text == "This is proven. And this."
    assert out.cited == []
    assert out.dropped == 2


def test_runs_lists_and_ranges() -> None:
    out = finalize("A [1][2]. B [1, 3]. C [2-3]. D [Source 3]. E [1; 7].", TITLES)
    assert out.text == "A [1][2]. B [1][3]. C [2][3]. D [3]. E [1]."
    assert out.cited == [0, 1, 2]
    assert out.dropped == 1  # the 7


def test_absurd_range_dropped_whole() -> None:
    assert expand_group("1-500") is None
    out = finalize("Everything [1-500].", TITLES)
    assert out.text == "Everything." and out.dropped == 1


def test_markers_inside_code_spans_untouched() -> None:
    out = finalize("Use `x[1]` and `y[99]` in code; cite [3].", TITLES)
    assert "`x[1]`" in out.text and "`y[99]`" in out.text
    assert out.text.endswith("cite [1].")
    assert out.cited == [2]
    assert out.dropped == 0


def test_invented_titles_removed() -> None:
    reply = (
        'As shown in "Quantum Attention Networks for Protein Folding" [1], and in '
        "**Deep Residual Transformers Beat Everything**, quantization works."
    )
    out = finalize(reply, TITLES)
    assert "Quantum Attention" not in out.text
    assert "Deep Residual Transformers" not in out.text
    assert out.dropped == 2
    assert out.cited == [0]


def test_invented_title_line_removed() -> None:
    out = finalize("Title: Made Up Paper About Everything\nIt works [1].", TITLES)
    assert "Made Up Paper" not in out.text
    assert out.dropped == 1


def test_real_title_kept_and_counts_as_citation() -> None:
    out = finalize(f'The paper "{TITLES[2]}" quantizes GPT models.', TITLES)
    assert TITLES[2] in out.text
    assert out.cited == [2]
    assert out.text.endswith("[1] quantizes GPT models.")


def test_near_title_matches_source() -> None:
    assert (
        match_title(
            "RepQ-ViT: Scale Reparameterization for Post Training Quantization of Vision Transformer", TITLES
        )
        == 0
    )
    assert match_title("Completely Different Paper Title Here", TITLES) is None


def test_quoted_plain_phrase_is_not_a_title() -> None:
    out = finalize('They call it "a simple and effective baseline" [1].', TITLES)
    assert "a simple and effective baseline" in out.text
    assert out.dropped == 0
    assert not looks_like_title("a simple and effective baseline")


def test_reply_in_another_language() -> None:
    out = finalize("Les auteurs proposent une quantification après entraînement [2] [5].", TITLES)
    assert out.text == "Les auteurs proposent une quantification après entraînement [1]."
    assert out.cited == [1]
    assert out.dropped == 1


@pytest.mark.parametrize("reply", ["", "   \n  "])
def test_empty_reply(reply: str) -> None:
    out = finalize(reply, TITLES)
    assert out.text == "" and out.cited == [] and out.dropped == 0


def test_no_sources_drops_every_marker() -> None:
    out = finalize("Claim [1].", [])
    assert out.text == "Claim." and out.dropped == 1


def test_unclosed_bracket_is_plain_text() -> None:
    out = finalize("An array a[3 and a list [see below", TITLES)
    assert out.text == "An array a[3 and a list [see below"


@pytest.mark.parametrize("cut", range(1, 12))
def test_stream_gives_same_text_wherever_deltas_are_cut(cut: int) -> None:
    reply = "Post-training quantization [2] helps [1, 3]; not [42]. Code `a[1]` ok [2]."
    stream = CitationStream(len(TITLES))
    pieces = [reply[i : i + cut] for i in range(0, len(reply), cut)]
    streamed = "".join(stream.feed(p) for p in pieces) + stream.close()
    whole = CitationStream(len(TITLES))
    assert streamed == whole.feed(reply) + whole.close()
    assert "[42]" not in streamed
    assert stream.state.dropped == 1


def test_stream_does_not_hold_back_plain_text() -> None:
    stream = CitationStream(3)
    assert stream.feed("Hello world") == "Hello world"
    assert stream.feed(" and [") == " and "
    assert stream.feed("2] more") == "[1] more"


def test_copied_source_layout_lines_are_mapped() -> None:
    reply = (
        "1. NoisyQuant: Noisy Bias-Enhanced Post-Training Quantization for Vision Transformers: "
        "This paper adds noise.\n"
        "2. Quantum Gravity Transformers for Everyone: This one is invented.\n"
        "[3] GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers"
    )
    out = finalize(reply, TITLES)
    lines = out.text.split("\n")
    assert lines[0] == f"1. {TITLES[1]} [1]: This paper adds noise."
    assert "Quantum Gravity" not in out.text and lines[1] == "2. This one is invented."
    assert lines[2] == f"[2] {TITLES[2]} [2]" or lines[2].endswith(f"{TITLES[2]} [2]")
    assert out.cited == [1, 2]
    assert out.dropped == 1


def test_short_name_mention_becomes_a_citation() -> None:
    out = finalize("GPTQ quantizes weights to 3 or 4 bits. RepQ-ViT does it for ViTs [1].", TITLES)
    assert out.text == "GPTQ [1] quantizes weights to 3 or 4 bits. RepQ-ViT does it for ViTs [2]."
    assert out.cited == [2, 0]


def test_a_short_name_inside_a_longer_one_is_the_longer_ones() -> None:
    """ "Mamba" in "Mamba in Speech [1]" is not a mention of the paper named Mamba: it gets no
    marker there (the answer read "Mamba [2] in Speech [1]"); a mention of its own does."""
    titles = [
        "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
        "Mamba in Speech: Towards an Alternative to Self-Attention",
    ]
    result = finalize("Mamba in Speech [2]: it does speech [2].", titles)
    assert result.text == "Mamba in Speech [1]: it does speech [1]."
    result = finalize("Mamba in Speech [2]: it applies Mamba to speech [2].", titles)
    assert result.text == "Mamba in Speech [1]: it applies Mamba [2] to speech [1]."


def test_plain_sentences_with_colons_are_left_alone() -> None:
    reply = "In short: the method works. Key result: 4-bit weights [1]."
    assert finalize(reply, TITLES).text == "In short: the method works. Key result: 4-bit weights [1]."


def test_invented_subtitle_after_a_real_name_is_removed_with_its_marker() -> None:
    reply = "1. NoisyQuant: Noiseless Quantization for Non-Numerical Transformers [3]\nIt adds noise [2]."
    out = finalize(reply, TITLES)
    assert "Noiseless Quantization" not in out.text
    assert out.text.split("\n")[0] == "1. NoisyQuant [1]"
    assert out.cited == [1]  # GPTQ's [3] went with the invented title
    assert out.dropped == 1


def test_real_subtitle_is_kept() -> None:
    reply = "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers [3]"
    out = finalize(reply, TITLES)
    assert out.text == f"{TITLES[2]} [1]"
    assert out.cited == [2]
