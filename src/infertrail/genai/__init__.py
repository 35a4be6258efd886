"""Generative-AI inference: LLM calls traced, measured, costed, monitored and audited.

- :class:`GenAI` records generations of any generate function through a Monitor (spans and
  metrics after the OpenTelemetry GenAI conventions, docs/conventions.md; the audit record with
  keyed digests of prompt and answer; cost per token; prompt drift);
- :func:`infertrail.genai.openai.instrument_openai` wraps the official ``openai`` client
  (sync, async, streaming), and so every OpenAI-compatible server.

docs/genai.md describes both, and how they live beside the OpenTelemetry ``openai``
instrumentation.
"""

from __future__ import annotations

from infertrail.genai.calls import GenAI, GenerationCall, check_messages

__all__ = ["GenAI", "GenerationCall", "check_messages"]
