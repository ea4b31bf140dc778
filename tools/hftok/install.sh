#!/usr/bin/env bash
# Installs Hugging Face tokenizers (the Rust library via npm @anush008/tokenizers 0.6.0, which is tokenizers
# 0.22.2, with its prebuilt linux-x64 binding) into tools/hftok/node_modules, exactly as pinned by
# package-lock.json. Idempotent: when the pinned version is present it only checks it. Used by CI and by
# developers; tokenizer/hftok_test.go compares our trained tokenizer.json against it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

want=0.6.0

have() { # prints the installed version of package $1, or nothing
  local f="node_modules/$1/package.json"
  [[ -f $f ]] && node -p "require('./$f').version" 2>/dev/null || true
}

command -v node >/dev/null || { echo "hftok: node is not on PATH (Node >= 18 needed)" >&2; exit 1; }
command -v npm >/dev/null || { echo "hftok: npm is not on PATH" >&2; exit 1; }

if [[ $(have @anush008/tokenizers) == "$want" ]]; then
  echo "hftok: @anush008/tokenizers $want already installed"
else
  echo "hftok: installing @anush008/tokenizers $want (a few MB)"
  # Optional dependencies are kept: the native binding for this platform is one of them.
  npm ci --no-audit --no-fund
fi

# Smoke check: the native binding loads and encodes.
node --input-type=module -e '
import t from "@anush008/tokenizers";
if (typeof t.Tokenizer?.fromString !== "function") { console.error("hftok: binding did not load"); process.exit(1); }
console.log("hftok: ok");
'
