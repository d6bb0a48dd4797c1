# Every target brings Node.js 24 and the locked dependencies first (scripts/toolchain.sh),
# so a machine with only Node 20 and npm can run them.
RUN := scripts/toolchain.sh

.PHONY: start test lint typecheck unit integration bench format setup

## start: the vault on its embedded default (SQLite in .data/vault, the demo provider); ARGS="..." adds serve options
start:
	@$(RUN) node packages/cli/src/main.ts serve --demo --data-dir .data/vault $(ARGS)

## test: lint, type-check, unit and integration tests: what CI runs
test:
	@scripts/ensure-chromium.sh
	@$(RUN) npm test

lint:
	@$(RUN) npm run lint

typecheck:
	@$(RUN) npm run typecheck

unit:
	@$(RUN) npm run test:unit

integration:
	@scripts/ensure-chromium.sh
	@$(RUN) npm run test:integration

format:
	@$(RUN) npm run format

## bench: the benchmarks in bench/; results go to bench/results/ and the table in bench/README.md is updated by hand
bench:
	@$(RUN) node bench/run.ts

## setup: only install the toolchain and dependencies
setup:
	@$(RUN) true
