"""The pipeline the way a LlamaIndex user would use it (fast tier, no model): the retriever as a
``BaseRetriever``, the answering pipeline as a query engine (``query``, ``aquery``) and as a
``QueryEngineTool`` an agent can call."""

from __future__ import annotations

from llama_index.core.base.response.schema import Response
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.tools import QueryEngineTool

from app.answering.engine import PaperQAQueryEngine
from app.services import Services
from tests.fakes import ScriptedBackend, with_backend

QUESTION = "Which papers quantize vision transformers after training?"
OFF_TOPIC = "What is the best recipe for chocolate chip cookies?"


def test_the_retriever_returns_one_node_per_paper(contract_services: Services) -> None:
    retriever = contract_services.retriever
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve(QUESTION)
    papers = [n.node.metadata["paper_id"] for n in nodes]
    assert papers[0] == "vit-ptq" and len(papers) == len(set(papers))
    assert nodes[0].node.metadata["title"].startswith("Post-Training Quantization")
    assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)


def test_query_returns_a_response_with_cited_source_nodes(contract_services: Services) -> None:
    engine = contract_services.engine
    assert isinstance(engine, PaperQAQueryEngine)
    response = engine.query(QUESTION)
    assert isinstance(response, Response) and response.response and "[1]" in response.response
    meta = response.metadata or {}
    assert meta["refused"] is False and meta["citations"]
    cited = [n.node.metadata for n in response.source_nodes]
    assert [m["marker"] for m in cited] == [c["marker"] for c in meta["citations"]]
    assert [m["paper_id"] for m in cited] == [c["paper_id"] for c in meta["citations"]]
    assert all(n.node.get_content() for n in response.source_nodes)
    assert meta["timings"]["total_ms"] > 0


async def test_aquery_and_a_refusal(contract_services: Services) -> None:
    response = await contract_services.engine.aquery(OFF_TOPIC)
    assert isinstance(response, Response)
    assert (response.metadata or {})["refused"] is True and response.source_nodes == []


def test_the_engine_as_a_query_engine_tool(contract_services: Services) -> None:
    sources = contract_services.engine.query(QUESTION).metadata["sources"]  # type: ignore[index]
    repq = next(s["n"] for s in sources if s["paper_id"] == "repq")
    scripted = ScriptedBackend(
        f"RepQ-ViT decouples quantization and inference with scale reparameterization [{repq}]."
    )
    services = with_backend(contract_services, scripted, answer_strategy="generate")
    tool = QueryEngineTool.from_defaults(
        query_engine=services.engine,
        name="paper_qa",
        description="Answers questions about the indexed research papers, citing them.",
    )
    output = tool.call(QUESTION)
    # the one sentence, checked against the cited abstract, its marker renumbered in citing order
    assert (
        output.content == "RepQ-ViT decouples quantization and inference with scale reparameterization [1]."
    )
    raw = output.raw_output
    assert isinstance(raw, Response) and raw.source_nodes[0].node.metadata["title"].startswith("RepQ-ViT")
    services.engine.close()
