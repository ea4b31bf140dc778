#!/usr/bin/env bash
# Builds the C++ harnesses that use llama.cpp as a reference — cvec_logits (runs
# llama.cpp with control vectors, cvec_logits.cpp), ggml_quant (GGML's own
# quantization and dequantization, ggml_quant.cpp), ggml_matmul (GGML's CPU
# backend multiplying quantized weights, ggml_matmul.cpp) and llama_quantize
# (its model quantizer, llama_quantize.cpp) — against the llama.cpp that
# tools/llamaref installs from npm: headers from the git bundle the package
# ships, libraries from its prebuilt binaries. Needs g++ and git, and
# `bash tools/llamaref/install.sh` first. Idempotent: a harness newer than its
# inputs is not rebuilt. Prints cvec_logits' absolute path on its last line
# (the others lie beside it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ref="$(dirname "$here")"
bundle="$ref/node_modules/node-llama-cpp/llama/gitRelease.bundle"
bins="$ref/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
build="$here/build"
out="$build/cvec_logits"

for tool in g++ git; do
	command -v "$tool" >/dev/null || { echo "build.sh: $tool is not on PATH (needed to build the llama.cpp control-vector harness)" >&2; exit 1; }
done
[ -f "$bundle" ] && [ -f "$bins/libllama-common.so" ] || {
	echo "build.sh: llama.cpp reference not installed ($bundle or $bins missing); run: bash tools/llamaref/install.sh" >&2
	exit 1
}
mkdir -p "$build"

# Headers of the same llama.cpp commit as the binaries (other copies differ in
# struct layouts). Cloned once; a stale clone is replaced when the bundle changes.
src="$build/llama.cpp"
if [ ! -f "$src/.from-bundle" ] || [ "$src/.from-bundle" -ot "$bundle" ]; then
	tmp="$(mktemp -d "$build/clone.XXXXXX")"
	git clone --quiet "$bundle" "$tmp/llama.cpp" 2>/dev/null
	touch "$tmp/llama.cpp/.from-bundle"
	rm -rf "$src"
	mv "$tmp/llama.cpp" "$src"
	rmdir "$tmp"
fi

for name in ggml_quant ggml_matmul llama_quantize cvec_logits; do
	bin="$build/$name"
	if [ -x "$bin" ] && [ "$bin" -nt "$here/$name.cpp" ] && [ "$bin" -nt "$here/harness.h" ] && [ "$bin" -nt "$here/build.sh" ] && [ "$bin" -nt "$bundle" ]; then
		continue
	fi
	tmp_out="$(mktemp "$build/$name.XXXXXX")"
	trap 'rm -f "$tmp_out"' EXIT
	g++ -std=c++17 -O1 -o "$tmp_out" "$here/$name.cpp" \
		-I"$src/include" -I"$src/common" -I"$src/ggml/include" \
		"$bins/libllama-common.so" "$bins/libllama.v0.4.0.so" "$bins/libggml.v0.4.0.so" "$bins/libggml-base.so" \
		-Wl,-rpath,"$bins"
	chmod +x "$tmp_out"
	mv "$tmp_out" "$bin"
	trap - EXIT
done
echo "$out"
