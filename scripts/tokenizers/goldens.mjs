// Generates the golden files tokenizer/hf and tokenizer/chattemplate are
// tested against (`make tokenizer-goldens`), from reference implementations:
// token ids and decoded text from @huggingface/tokenizers (the tokenizer of
// transformers.js), chat renderings from @huggingface/jinja with vLLM's
// request handling and Jinja2's way of writing values (vllm.mjs). @lenml/tokenizers is run as a second opinion
// and disagreements are reported, not written.
//
// Reads the tokenizer files `make tokenizer-data` fetched
// ($STRATA_TOKENIZER_CACHE, default .cache/tokenizers) and the chat
// templates in github.com/ardanlabs/jinja's testdata (via `go list`).
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";
import { TokenizerLoader } from "@lenml/tokenizers";
import { buildCorpus } from "./corpus.mjs";
import { buildChats } from "./chats.mjs";
import { conformance } from "./conformance.mjs";
import * as vllm from "./vllm.mjs";

// The reference writes values as Jinja2 (Python's str()) does.
vllm.installPythonStr();

// strftime_now and Date: a fixed instant, in UTC (the Go tests use the same).
process.env.TZ = "UTC";
const FIXED_TIME = Date.UTC(2024, 6, 26, 9, 30, 0);
const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...args) {
    super(...(args.length ? args : [FIXED_TIME]));
  }
  static now() {
    return FIXED_TIME;
  }
};

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const cache = process.env.STRATA_TOKENIZER_CACHE || path.join(root, ".cache/tokenizers");
const hfData = path.join(root, "tokenizer/hf/testdata");
const ctData = path.join(root, "tokenizer/chattemplate/testdata");
const versions = JSON.parse(fs.readFileSync(path.join(here, "package.json"))).dependencies;
const reference = `@huggingface/tokenizers@${versions["@huggingface/tokenizers"]}`;
const jinjaRef = `@huggingface/jinja@${versions["@huggingface/jinja"]}`;

const readJSON = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
const writeLines = (p, lines) => {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  console.log(`wrote ${path.relative(root, p)} (${lines.length} lines)`);
};

function caseText(c) {
  if (c.text !== undefined) return c.text;
  const bytes = Uint8Array.from(c.hex.match(/../g).map((h) => parseInt(h, 16)));
  return new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes);
}

// The tokenizers under test: the fetched ones and variants of them
// (testdata/variants.json) that exercise components the real files lack.
function loadTokenizers() {
  const out = [];
  for (const name of ["qwen3", "llama3_1", "llama2"]) {
    out.push({ name, json: readJSON(path.join(cache, name, "tokenizer.json")), config: readJSON(path.join(cache, name, "tokenizer_config.json")) });
  }
  for (const v of readJSON(path.join(hfData, "variants.json"))) {
    const b = out.find((t) => t.name === v.base);
    out.push({ name: v.name, base: v.base, json: { ...structuredClone(b.json), ...v.set }, config: b.config, variant: true });
  }
  return out;
}

function tokenGoldens(tokenizers, corpus) {
  for (const t of tokenizers) {
    const tok = new Tokenizer(t.json, t.config);
    const second = t.variant ? null : TokenizerLoader.fromPreTrained({ tokenizerJSON: t.json, tokenizerConfig: t.config });
    let prefix = null;
    let suffix = null;
    let disagreements = 0;
    const wrapped = [];
    const lines = corpus.map((c, i) => {
      const text = caseText(c);
      const ids = tok.encode(text, { add_special_tokens: false }).ids;
      const full = tok.encode(text, { add_special_tokens: true }).ids;
      // add_special_tokens only wraps the ids: check that, learning the
      // wrapper from the first non-empty case.
      if (prefix === null && ids.length > 0) {
        const p = findPrefix(full, ids);
        [prefix, suffix] = [full.slice(0, p), full.slice(p + ids.length)];
      }
      wrapped.push([i, ids, full]);
      if (second) {
        const ids2 = second.encode(text, { add_special_tokens: false });
        if (JSON.stringify(ids2) !== JSON.stringify(ids)) disagreements++;
      }
      const line = { i, ids };
      const decode = (skip) => (ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }));
      const decoded = decode(false);
      const skipped = decode(true);
      if (decoded !== text) line.text = decoded;
      if (skipped !== decoded) line.skip = skipped;
      return line;
    });
    for (const [i, ids, full] of wrapped) {
      if (JSON.stringify(full) !== JSON.stringify([...prefix, ...ids, ...suffix])) throw new Error(`${t.name} case ${i}: add_special_tokens is not a fixed wrapper`);
    }
    const header = { tokenizer: t.name, base: t.base ?? null, reference, cases: corpus.length, special_prefix: prefix, special_suffix: suffix };
    writeLines(path.join(hfData, "golden", `${t.name}.jsonl`), [header, ...lines]);
    if (second) console.log(`  @lenml/tokenizers disagrees with ${reference} on ${disagreements} of ${corpus.length} cases`);
  }
}

function findPrefix(full, ids) {
  for (let p = 0; p + ids.length <= full.length; p++) {
    if (ids.every((id, k) => full[p + k] === id)) return p;
  }
  throw new Error("encoding without special tokens is not inside the one with them");
}

// A request's rendering, or the reason the reference rejects it.
function renderCase(templates, special, body) {
  try {
    return { text: vllm.render(templates, special, body) };
  } catch (e) {
    return { error: String(e.message ?? e) };
  }
}

function templatesOf(config) {
  const ct = config.chat_template;
  if (typeof ct === "string") return { default: ct };
  return Object.fromEntries(ct.map((t) => [t.name, t.template]));
}

function chatGoldens(tokenizers, chats) {
  for (const t of tokenizers.filter((t) => !t.variant && t.config.chat_template)) {
    const tok = new Tokenizer(t.json, t.config);
    const special = vllm.specialTokensMap(t.config);
    const lines = chats.map((request, i) => {
      const r = renderCase(templatesOf(t.config), special, request);
      if (r.text !== undefined) r.ids = r.text === "" ? [] : tok.encode(r.text, { add_special_tokens: false }).ids;
      return { i, request, ...r };
    });
    const header = { tokenizer: t.name, reference: `${jinjaRef} + ${reference}`, format: vllm.detectContentFormat(templatesOf(t.config).default), time: new RealDate(FIXED_TIME).toISOString() };
    writeLines(path.join(hfData, "golden", `chat-${t.name}.jsonl`), [header, ...lines]);
  }
}

// The chat templates of many models, from the Jinja engine's own testdata.
function moduleTemplates(chats) {
  const dir = execFileSync("go", ["list", "-m", "-f", "{{.Dir}}", "github.com/ardanlabs/jinja"], { cwd: root, encoding: "utf8" }).trim();
  const version = execFileSync("go", ["list", "-m", "-f", "{{.Version}}", "github.com/ardanlabs/jinja"], { cwd: root, encoding: "utf8" }).trim();
  const special = { bos_token: "<s>", eos_token: "</s>" };
  const tdir = path.join(dir, "testdata/templates");
  for (const f of fs.readdirSync(tdir).sort()) {
    const source = fs.readFileSync(path.join(tdir, f), "utf8");
    const lines = chats.map((request, i) => ({ i, request, ...renderCase({ default: source }, special, request) }));
    const header = { template: `github.com/ardanlabs/jinja@${version}/testdata/templates/${f}`, reference: jinjaRef, special, format: vllm.detectContentFormat(source), time: new RealDate(FIXED_TIME).toISOString() };
    writeLines(path.join(ctData, "golden", f.replace(/\.jinja$/, ".jsonl")), [header, ...lines]);
  }
}

function conformanceGoldens() {
  const special = { bos_token: "<s>", eos_token: "</s>" };
  const lines = conformance.map(({ name, template, request }) => ({ name, template, request, ...renderCase({ default: template }, special, request) }));
  writeLines(path.join(ctData, "golden", "conformance.jsonl"), [{ reference: jinjaRef, special, time: new RealDate(FIXED_TIME).toISOString() }, ...lines]);
}

const corpus = buildCorpus();
writeLines(path.join(hfData, "corpus.jsonl"), corpus);
const tokenizers = loadTokenizers();
tokenGoldens(tokenizers, corpus);
const chats = buildChats();
chatGoldens(tokenizers, chats);
moduleTemplates(chats);
conformanceGoldens();
