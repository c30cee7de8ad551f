# The two commands a newcomer needs:
#   make run    build the web UI and the gateway, start one gateway on the embedded bus
#   make test   start the real test services, run every check, stop the services

WHISPER_CACHE ?= $(HOME)/.cache/whisperrooms
# Build output lives in the cache so a fresh clone builds warm.
CARGO_TARGET_DIR ?= $(WHISPER_CACHE)/target
export WHISPER_CACHE CARGO_TARGET_DIR

.PHONY: run test web

run: web
	cargo run --release --locked -p whisper-gateway -- --listen $${WHISPER_LISTEN:-127.0.0.1:8080}

test:
	scripts/test

web:
	scripts/web build
