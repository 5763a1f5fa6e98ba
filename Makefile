# Two commands on a fresh machine: `make demo` (the main job on generated data) and `make test`.
# Both create .venv and install everything first (torch, then pillow-simd in place of Pillow);
# `make install` does only that (then `. .venv/bin/activate` puts alexnet-prep/-train on PATH).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
DEMO    ?= demo

.PHONY: install demo test bench-prep clean-demo

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	@# pillow-simd replaces Pillow (same `PIL` import). It needs a C compiler and libjpeg
	@# headers; without them we keep stock Pillow and the code warns at run time.
	@if command -v cc >/dev/null; then \
	  flags=""; grep -q avx2 /proc/cpuinfo 2>/dev/null && flags="-mavx2"; \
	  $(PY) -m pip uninstall -q -y pillow pillow-simd; \
	  CC="cc $$flags" $(PY) -m pip install -q --force-reinstall --no-deps --no-binary :all: pillow-simd \
	  || { echo "WARNING: pillow-simd failed to build; falling back to stock Pillow (slower prep)"; \
	       $(PY) -m pip install -q pillow; }; \
	else echo "WARNING: no C compiler: using stock Pillow instead of pillow-simd (slower prep)"; fi
	@$(PY) -c "from shared.patch import pillow_flavour as f; print('active Pillow:', f())"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/alexnet-prep synth --out $(DEMO)/src
	$(VENV)/bin/alexnet-prep shard --src $(DEMO)/src --output-dir $(DEMO)/shards --shard-size 32 --overwrite
	$(VENV)/bin/alexnet-prep stats --shards $(DEMO)/shards
	rm -rf $(DEMO)/runs/demo
	$(VENV)/bin/alexnet-train --shards $(DEMO)/shards --preset demo --output-dir $(DEMO)/runs --run-name demo
	$(VENV)/bin/alexnet-train predict --checkpoint $(DEMO)/runs/demo/best.pt \
	    $$(ls $(DEMO)/src/ILSVRC/Data/CLS-LOC/val/*.JPEG | head -4)

test: $(STAMP)
	$(PY) -m pytest -q

bench-prep: $(STAMP)
	$(PY) bench/prep_throughput.py --src $(SRC)

clean-demo:
	rm -rf $(DEMO)
