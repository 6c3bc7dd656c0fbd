// The fixture corpus of tokenizer/hf's golden tests: hand-written strings
// for each kind of text the issue lists, plus seeded combinations of them.
// buildCorpus() is deterministic (its PRNG is seeded), so the committed
// corpus changes only when this file does.
//
// Each case is {tag, text} or, for bytes that are not UTF-8, {tag, hex}.

const english = [
  "Hello world",
  "Hello, world!",
  "The quick brown fox jumps over the lazy dog.",
  "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
  "Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in Liberty, and dedicated to the proposition that all men are created equal.",
  "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.",
  "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.",
  "Happy families are all alike; every unhappy family is unhappy in its own way.",
  "We hold these truths to be self-evident, that all men are created equal, that they are endowed by their Creator with certain unalienable Rights.",
  "I'm sure you'll agree: we've done what we'd planned, and they're happy it's over. Isn't it? Didn't they? Won't you?",
  "I'M SURE YOU'LL AGREE: WE'VE DONE WHAT WE'D PLANNED, AND THEY'RE HAPPY IT'S OVER.",
  "Don't, can't, shouldn't've, y'all, o'clock, rock'n'roll, 'tis, 'twas, ma'am.",
  "He said \"hello\" and she said 'goodbye'; then \u201csmart quotes\u201d and \u2018single ones\u2019 appeared.",
  "Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal, thank you very much.",
  "A large language model (LLM) is a language model trained with self-supervised learning on a vast amount of text.",
  "KV-cache-aware routing sends a request to the worker that already holds the longest prefix of its prompt.",
  "Please summarize the following document in three bullet points, then list any action items with owners and due dates.",
  "You are a helpful assistant. Answer concisely and cite your sources.",
  "The meeting is at 3:30 p.m. on Tuesday, 14 March 2023, in room B-204 (second floor).",
  "e.g. i.e. etc. vs. a.m. p.m. U.S.A. Ph.D. No. 5",
  "Email me at jane.doe+tokens@example.com or visit https://example.org/path?query=1&lang=en#section-2.",
  "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.",
  "supercalifragilisticexpialidocious antidisestablishmentarianism floccinaucinihilipilification",
  "The Well-Known Brand™ costs $19.99 (€18.50, £16.20, ¥2,800) — a 20% discount!",
  "hello", "Hello", "HELLO", "hELLO", " hello", "  hello", "hello ", "hello  ", " hello ",
  "a", "I", " ", "  ", "x y z", "one two  three   four    five",
  "The end.",
];

const code = [
  "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
  "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor i := 0; i < 10; i++ {\n\t\tfmt.Println(i)\n\t}\n}\n",
  "func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {\n\tvar req chatRequest\n\tif err := decodeJSON(w, r, s.cfg.MaxBodyBytes, &req); err != nil {\n\t\twriteError(w, err)\n\t\treturn\n\t}\n}",
  "const add = (a, b) => a + b;\nconsole.log(add(2, 3)); // 5\n",
  "#include <stdio.h>\n\nint main(void) {\n    printf(\"Hello, %s!\\n\", \"world\");\n    return 0;\n}\n",
  "SELECT id, name, COUNT(*) AS n\nFROM users u\nJOIN orders o ON o.user_id = u.id\nWHERE u.created_at >= '2024-01-01'\nGROUP BY id, name\nHAVING n > 3\nORDER BY n DESC;\n",
  "{\n  \"name\": \"strata\",\n  \"version\": \"1.0.0\",\n  \"scripts\": {\n    \"test\": \"go test ./...\"\n  },\n  \"tags\": [\"llm\", \"kv-cache\"]\n}\n",
  "apiVersion: v1\nkind: Pod\nmetadata:\n  name: vllm\n  labels:\n    app: inference\nspec:\n  containers:\n    - name: engine\n      image: vllm/vllm-openai:latest\n      args: [\"--model\", \"Qwen/Qwen3-8B\"]\n",
  "class Node:\n    \"\"\"A node of a singly linked list.\"\"\"\n\n    def __init__(self, value, next=None):\n        self.value = value\n        self.next = next\n\n    def __repr__(self):\n        return f\"Node({self.value!r})\"\n",
  "fn main() {\n    let v: Vec<u32> = (1..=10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
  "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Test</title></head>\n<body>\n  <p class=\"note\">Hello &amp; welcome!</p>\n</body>\n</html>\n",
  "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.json; do\n  jq -r '.name' \"$f\" || echo \"bad: $f\" >&2\ndone\n",
  "x = [i**2 for i in range(10) if i % 2 == 0]  # squares of evens\nprint(sum(x), max(x), min(x))\n",
  "if (a && b || !c) { x += y << 2; } else if (d != e) { z = a ? b : c; }",
  "matrix = [[1, 2, 3],\n          [4, 5, 6],\n          [7, 8, 9]]\n",
  "    indented four\n\tindented tab\n        indented eight\n\t\tindented two tabs\n  \t mixed\n",
  "import numpy as np\nimport torch\n\nx = torch.randn(4, 8, device=\"cuda\")\ny = x @ x.T\n",
  "// TODO(alice): handle the error case\n/* multi-line\n * comment\n */\n",
  "$ curl -s http://127.0.0.1:8000/v1/models | jq .\n{\n  \"object\": \"list\"\n}\n",
  "a=1;b=2;c=a+b;print(c)",
  "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-old line\n+new line\n context\n",
  "\\begin{equation}\n  E = mc^2 \\quad \\text{and} \\quad \\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}\n\\end{equation}\n",
  "regex: ^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)$",
  "key1=value1&key2=value%202&key3[]=a&key3[]=b",
  "1234567890abcdefABCDEF0x1F 0b1010 0o777 1e-9 3.14159e+10 -0.0 +42",
];

const whitespaceKinds = [
  " ", "\t", "\n", "\r", "\r\n", "\n\r", "\u000b", "\u000c", "\u0085", "\u00a0", "\u1680", "\u2000", "\u2007",
  "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "\u200d", "\ufeff", "\u001c", "\u001f",
];

const numbers = [
  "0", "7", "42", "123", "1234", "12345", "123456", "1234567", "12345678", "123456789", "1234567890",
  "12345678901234567890", "3.14159", "2.718281828459045", "-42", "+42", "1,234,567.89", "1.234.567,89",
  "1e10", "6.022e23", "0x7fffffff", "1/2", "99%", "$1,000", "10:30", "2024-06-01", "192.168.0.1",
  "v1.2.3", "A4", "4x4", "3rd", "21st", "1000000 2000000 3000000", "007", "1 2 3 4 5 6 7 8 9 10",
  "０１２３４５６７８９", "١٢٣٤٥٦٧٨٩٠", "۱۲۳", "०१२३", "๑๒๓", "½ ¼ ¾", "² ³ ¹", "Ⅻ ⅻ Ⅳ", "①②③", "𝟘𝟙𝟚",
  "1\u00a0000", "12 345 678", "π≈3.14", "∞", "1st, 2nd, 3rd, 4th",
];

const punctuation = [
  "!!!", "???", "...", "…", "?!?!", "!?", "---", "—–-", "***", "___", "~~~", "###", "@@@", "$$$", "%%%",
  "^^^", "&&&", "|||", "\\\\\\", "///", "<<<>>>", "((()))", "[[[]]]", "{{{}}}", "'''", "\"\"\"", "```",
  ",,,", ";;;", ":::", "::", "->", "=>", "<=", ">=", "!=", "===", "!==", "<->", "<<=", ">>=", "**=", "//=",
  "¡Hola!", "¿Qué?", "«quote»", "„Zitat“", "「引用」", "『二重』", "【注】", "・", "、。", "，．", "！？",
  ":)", ";-)", ":-(", "¯\\_(ツ)_/¯", "(╯°□°)╯︵ ┻━┻", ". . .", "! ! !", "a.b.c", "a,b,c", "a-b-c", "a_b_c",
  "'", "''", "'s", "'S", "''s", "s'", "it's'", "'re'", "'ll've", "'ſ", "'ſt", "'Ss", "'LLs", "' s",
  "#!", "//", "/*", "*/", "<!--", "-->", "</", "/>", "<|", "|>", "<||>", "\u00ab\u00bb", "\u2039\u203a",
];

const emoji = [
  "😀", "😀😃😄", "👍", "👍🏽", "👍🏿👍🏻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵🇫🇷🇩🇪", "1️⃣", "#️⃣", "❤️", "❤", "♥️",
  "🔥🔥🔥", "🤖 robots", "I ❤️ NY", "party 🎉🎊", "🙂🙃", "🧑‍💻", "👩🏽‍🚀", "🫠", "🪐", "🐈‍⬛",
  "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝐁𝐨𝐥𝐝", "𝓈𝒸𝓇𝒾𝓅𝓉", "𝟙𝟚𝟛", "𐍈𐌰𐌹", "𓀀𓀁", "𠜎𠜱𠝹", "𝄞 music", "🀄🃏", "\u{1f600}\u{fe0f}",
  "a😀b", "😀 😀", " 😀", "😀\n", "emoji at end 😀", "😀start",
];

const cjk = [
  "你好，世界！", "我爱北京天安门。", "人工智能正在改变世界。", "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
  "今天天气很好，我们去公园散步吧。", "机器学习模型需要大量的数据进行训练。", "中文文本没有空格分隔词语",
  "こんにちは世界", "東京は日本の首都です。", "ひらがなとカタカナとカンジ", "吾輩は猫である。名前はまだ無い。",
  "ｶﾀｶﾅ ﾊﾝｶｸ", "안녕하세요 세계", "한국어 텍스트 토큰화", "대한민국의 수도는 서울입니다.",
  "繁體中文與简体中文", "漢字テスト123", "中文English混合text", "Emoji中文😀混合", "日本語、English、한국어",
  "「こんにちは」と言った。", "全角　スペース", "㈱㊙️", "〇一二三四五六七八九十", "龘靐齉爩",
];

const other = [
  "مرحبا بالعالم", "بسم الله الرحمن الرحيم", "اللغة العربية جميلة جداً.", "السلام عليكم ورحمة الله",
  "مرحبا 123 hello", "קראתי את הספר", "שלום עולם", "Привет, мир!", "Съешь же ещё этих мягких французских булок.",
  "Γεια σου κόσμε", "ΣΊΣΥΦΟΣ σίσυφος", "नमस्ते दुनिया", "हिन्दी पाठ", "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่าง",
  "Xin chào thế giới", "Tiếng Việt có dấu", "Բարեւ աշխարհ", "გამარჯობა მსოფლიო", "ሰላም ዓለም", "ᐊᐃᑦᑎᓯ",
  "Grüße aus Köln", "Ærøskøbing", "Łódź, Gdańsk", "Ça va? Où êtes-vous?", "Straße STRASSE straße", "ﬁﬂ ligatures",
  "İstanbul ıi İI", "Ελληνικά ΑΒΓ", "Ǆemal ǅ ǆ", "naïve café résumé", "Åsa Ängel Ölm",
];

// Accented Latin written decomposed (NFD): a base letter and combining marks.
const nfd = [
  "Cafe\u0301", "re\u0301sume\u0301", "nai\u0308ve", "n\u0303", "A\u030a", "a\u0300e\u0301i\u0302o\u0303u\u0308",
  "Vie\u0323\u0302t Nam", "Tie\u0302\u0301ng Vie\u0323\u0302t", "e\u0301\u0301\u0301", "o\u0308\u0304", "Z\u0307",
  "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af", "e\u0301 vs \u00e9", "\u212b vs \u00c5 vs A\u030a",
  "\u2126 ohm", "\u0041\u0301\u0042\u0302", "x\u0338", "\u0915\u094d\u0937", "s\u0323\u0307", "q\u0307\u0323",
  "combining at start \u0301abc", "\u0301", "\u0301\u0301", "a\u034fb", "a\u0301 b\u0301 c\u0301",
];

const specials = [
  "<|im_start|>user\nhello<|im_end|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>",
  "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<s>", "</s>", "<unk>",
  "<s>[INST] hi [/INST]", "text<|im_end|>text", "text <|im_end|> text", "<|im_end|><|im_start|>",
  "<|im_start", "<|im_start|", "im_start|>", "<<|im_end|>>", "<|<|im_end|>|>", "<|im_end|><|im_end|>",
  "<think>\nreasoning\n</think>\n\nanswer", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "<tool_response>ok</tool_response>",
  "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>", "<|reserved_special_token_0|>", "<|reserved_special_token_250|>",
  "<|python_tag|>", "<|eom_id|>", "<|finetune_right_pad_id|>", "<|vision_start|><|image_pad|><|vision_end|>",
  "<s><s></s></s>", "a<s>b</s>c", "<|IM_START|>", "< |im_start| >", "<|im_start|>\u0301",
];

// Bytes that are not UTF-8 (hex): lone continuation bytes, truncated and
// overlong sequences, surrogates, code points above U+10FFFF.
const invalid = [
  "ff", "c3", "80", "e282", "e28228", "f09f98", "f09f9880ff", "c0af", "e080af", "eda080", "edbfbf",
  "f4908080", "f8888080", "fe", "c328a1", "e228a1", "f0288c28", "616263ff646566", "68c3", "ffc3a9",
  "e282ac80", "efbbbf", "efbfbd", "c2", "c2c2", "e1a0c0", "3cff7c696d5f656e647c3e", "20ff20", "0aff0a",
  "f09f9880f09f98", "e4bda0e5a5bdff", "c0", "c1bf", "f5", "fffefd", "ce", "cebacf", "30ff31",
];

const long = [
  "a".repeat(1000), "ab".repeat(700), "Pneumonoultramicroscopicsilicovolcanoconiosis".repeat(20),
  "1234567890".repeat(100), "中".repeat(600), "😀".repeat(300), " ".repeat(1000), "\n".repeat(300),
  "-".repeat(500), "=".repeat(80) + "\n" + "=".repeat(80), "ha".repeat(400) + "!", "Ｗ".repeat(200),
  "lo" + "o".repeat(2000) + "ng", "\t".repeat(200) + "x", "a b ".repeat(300), "x\u0301".repeat(300),
];

const fragments = [
  "the", " the", "The", "quick", " brown", "fox", "'s", "'LL", " 're", "don't", "it's", "A", "I",
  "0", "12", "345", "6789", "3.14", "1,000", "٣", "½",
  " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\u00a0", "\u3000", "\u0085", "\u2028", "\ufeff", "\u200b",
  "!", "?", ".", ",", "...", "--", "(", ")", "[", "]", "{", "}", "<", ">", "'", "\"", "`", "/", "\\", "#", "@", "$", "%", "_",
  "é", "e\u0301", "ß", "Å", "ñ", "ü", "ø", "İ", "ı", "ſ",
  "你好", "世界", "日本", "カタカナ", "한국", "مرحبا", "שלום", "Привет", "Γεια", "नमस्ते",
  "😀", "👍🏽", "🇺🇸", "👨‍👩‍👧", "𝔘", "𠜎",
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<s>", "</s>", "<think>", "</think>",
  "func", "return", "    ", "\t\t", "==", "!=", "=>", "::", "//", "/*", "*/", "0x", "ff", "\\n",
];

// mulberry32: a small seeded PRNG.
function rng(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function buildCorpus() {
  const cases = [];
  const add = (tag, text) => cases.push({ tag, text });
  for (const s of english) add("english", s);
  for (const s of code) {
    add("code", s);
    add("code-crlf", s.replaceAll("\n", "\r\n"));
  }
  // Whitespace runs and trailing spaces in every context the patterns tell
  // apart: between letters, digits, punctuation; at the ends; before a
  // line break.
  for (const ws of whitespaceKinds) {
    for (const n of [1, 2, 3]) {
      const run = ws.repeat(n);
      for (const ctx of ["a{}b", "{}a", "a{}", "{}", "1{}2", "!{}?", "a {} b", "a{} b", "a {}b", "{}\n", "\n{}", "x{}\ny", "你{}好"]) {
        add("whitespace", ctx.replace("{}", run));
      }
    }
  }
  for (const s of ["trailing space ", "trailing spaces   ", "trailing tab\t", "line one  \nline two \n", "  leading and trailing  ", "spaces   \n   around   \n   lines   ", "x \t \n \t y", "end with newline\n", "end with newlines\n\n\n", "\n\nstart with newlines", "crlf\r\nline\r\n", "cr\rcr\r", "mixed\r\n\n\r\r\n"]) add("trailing", s);
  for (const nl of ["\n", "\r\n", "\r", "\u0085", "\u2028", "\u2029", "\u000b", "\u000c"]) {
    for (const s of ["a{}b", "a{}{}b", "a {} b", "a{} {}b", "word{}", "{}word", "1{}2", ".{}.", "a{}{}{}b"]) add("newline", s.replaceAll("{}", nl));
  }
  for (const s of numbers) {
    add("number", s);
    add("number", `Total: ${s} items`);
  }
  for (const s of punctuation) {
    add("punctuation", s);
    add("punctuation", `word${s}word`);
    add("punctuation", ` ${s} `);
  }
  for (const s of emoji) add("emoji", s);
  for (const s of cjk) add("cjk", s);
  for (const s of other) add("script", s);
  for (const s of nfd) add("nfd", s);
  for (const s of specials) add("special", s);
  for (const h of invalid) cases.push({ tag: "invalid-utf8", hex: h });
  for (const s of long) add("long", s);
  // Seeded mixtures of fragments of every kind.
  const r = rng(20240601);
  for (let i = 0; i < 500; i++) {
    const n = 1 + Math.floor(r() * (i < 400 ? 24 : 200));
    let s = "";
    for (let j = 0; j < n; j++) s += fragments[Math.floor(r() * fragments.length)];
    add("mixed", s);
  }
  // Random code points from assigned, long-stable blocks (nothing added
  // after Unicode 13, so engines of any recent Unicode version agree).
  const blocks = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff], [0x600, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], [0x3040, 0x30ff], [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0x1f600, 0x1f64f]];
  for (let i = 0; i < 120; i++) {
    const n = 1 + Math.floor(r() * 30);
    let s = "";
    for (let j = 0; j < n; j++) {
      const [lo, hi] = blocks[Math.floor(r() * blocks.length)];
      const cp = lo + Math.floor(r() * (hi - lo + 1));
      const c = String.fromCodePoint(cp);
      if (/^[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Zs}]$/u.test(c)) s += c;
    }
    add("codepoints", s);
  }
  return cases;
}
