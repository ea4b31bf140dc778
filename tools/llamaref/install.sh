#!/usr/bin/env bash
# Installs the llama.cpp reference (npm node-llama-cpp 3.21.1 with its prebuilt linux-x64 CPU binaries) into
# tools/llamaref/node_modules, exactly as pinned by package-lock.json. Idempotent: when the pinned versions are
# already present it only checks them and exits. Used by CI (.ci/run) and by developers; see internal/llamaref.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

want_core=3.21.1
want_bin=3.21.1

have() { # prints the installed version of package $1, or nothing
  local f="node_modules/$1/package.json"
  [[ -f $f ]] && node -p "require('./$f').version" 2>/dev/null || true
}

command -v node >/dev/null || { echo "llamaref: node is not on PATH (Node >= 20 needed)" >&2; exit 1; }
command -v npm >/dev/null || { echo "llamaref: npm is not on PATH" >&2; exit 1; }

if [[ $(have node-llama-cpp) == "$want_core" && $(have @node-llama-cpp/linux-x64) == "$want_bin" ]]; then
  echo "llamaref: node-llama-cpp $want_core and @node-llama-cpp/linux-x64 $want_bin already installed"
else
  echo "llamaref: installing node-llama-cpp $want_core + @node-llama-cpp/linux-x64 $want_bin (about 83 MB)"
  # --ignore-scripts: the postinstall would try to download or build llama.cpp; the prebuilt package suffices.
  # --omit=optional: skip the GPU and other-platform binary packages.
  NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --ignore-scripts --omit=optional --no-audit --no-fund
fi

# Smoke check: the prebuilt binding loads without building or downloading anything.
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true node check.mjs
