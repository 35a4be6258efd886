"""Tests of the demo LLM (run by .venv-llm: scripts/llm-venv.sh)."""
