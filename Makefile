# The two commands: `make demo` (set up and run the main job) and `make test` (set up and run all tests).
.PHONY: demo test serve clean

demo:
	scripts/bootstrap.sh demo
	.venv/bin/infertrail demo

test:
	scripts/test.sh

serve:
	scripts/bootstrap.sh demo
	.venv/bin/infertrail train
	.venv/bin/infertrail serve

clean:
	rm -rf .infertrail bench/out
