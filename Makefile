# Three commands do everything on a fresh machine:
#   make app    start the Streamlit app (creates .venv first if needed)
#   make lab    open the notebooks in JupyterLab, with the datasets found as for the app
#   make test   run the whole test suite (likewise)
# The environment is rebuilt only when pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mimmx-installed

# Datasets: $MIMMX_DATA if set, else ../shared/data beside the checkout, else ./data.
MIMMX_DATA ?= $(firstword $(abspath $(wildcard ../shared/data)) $(CURDIR)/data)
export MIMMX_DATA

.PHONY: app lab test lint env bench clean-env

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

env: $(STAMP)

app: $(STAMP)
	$(BIN)/python -m mimmx warm-cache --scenarios-only --scenarios exp1
	$(BIN)/streamlit run app.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

test: $(STAMP)
	$(BIN)/python -m pytest -q -n logical --dist worksteal --durations=15

lint: $(STAMP)
	$(BIN)/ruff check mimmx tests bench app.py

clean-env:
	rm -rf $(VENV)
