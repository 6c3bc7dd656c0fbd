// Encoding throughput of the reference (@huggingface/tokenizers), for
// tokenizer/hf's benchmarks, which run it in the same `go test -bench` run
// to report the Go/node ratio.
//
// usage: node bench.mjs TOKENIZER_DIR CORPUS_FILE [SECONDS]
// prints one line of JSON: {"mb_per_s": …, "tokens": …, "bytes": …, "runs": …}
import fs from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, corpusPath, seconds = "3"] = process.argv.slice(2);
const json = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
const config = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
const tok = new Tokenizer(json, config);
const text = fs.readFileSync(corpusPath, "utf8");
const bytes = Buffer.byteLength(text, "utf8");

// Warm up (caches, JIT) as the Go benchmark's first iterations do.
let tokens = tok.encode(text, { add_special_tokens: false }).ids.length;
tok.encode(text, { add_special_tokens: false });
const deadline = performance.now() + Number(seconds) * 1000;
const start = performance.now();
let runs = 0;
while (runs < 2 || performance.now() < deadline) {
  tokens = tok.encode(text, { add_special_tokens: false }).ids.length;
  runs++;
}
const elapsed = (performance.now() - start) / 1000;
console.log(JSON.stringify({ mb_per_s: (bytes * runs) / elapsed / 1e6, tokens, bytes, runs }));
