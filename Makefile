# The two commands: `make demo` (set up and run the main job) and `make test` (set up and run all tests).
.PHONY: demo test serve clean

# The demo runs in .venv-llm (infertrail[demo,llm] with torch's CPU build, and the openai
# client), so that it shows the demo LLM too; .venv (make test's) stays without torch.
demo:
	scripts/llm-venv.sh >/dev/null
	.venv-llm/bin/infertrail demo

test:
	scripts/test.sh

serve:
	scripts/llm-venv.sh >/dev/null
	.venv-llm/bin/infertrail train
	.venv-llm/bin/infertrail serve

clean:
	rm -rf .infertrail bench/out
