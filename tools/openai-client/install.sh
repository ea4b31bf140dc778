#!/usr/bin/env bash
# Installs the official openai npm client (pinned by package-lock.json) into tools/openai-client/node_modules.
# Idempotent: when the pinned version is present it only checks it. Used by CI (.ci/run) and by developers;
# backend/npmclient_test.go runs client.mjs against persona serve.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

want=6.49.0

have() { # prints the installed version of package $1, or nothing
  local f="node_modules/$1/package.json"
  [[ -f $f ]] && node -p "require('./$f').version" 2>/dev/null || true
}

command -v node >/dev/null || { echo "openai-client: node is not on PATH (Node >= 20 needed)" >&2; exit 1; }
command -v npm >/dev/null || { echo "openai-client: npm is not on PATH" >&2; exit 1; }

if [[ $(have openai) == "$want" ]]; then
  echo "openai-client: openai $want already installed"
else
  echo "openai-client: installing openai $want (about 20 MB, no dependencies)"
  npm ci --no-audit --no-fund
fi

# Smoke check: the client loads.
node --input-type=module -e '
import OpenAI from "openai";
if (typeof OpenAI !== "function") { console.error("openai-client: the openai package did not load"); process.exit(1); }
console.log("openai-client: ok");
'
