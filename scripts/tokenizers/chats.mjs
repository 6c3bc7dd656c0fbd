// Chat requests (OpenAI request bodies) for the chat template goldens:
// system, user, assistant and tool messages, tool calls and definitions,
// content parts, reasoning, template kwargs, continue_final_message, and
// seeded combinations. Deterministic.

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city. Units <b>metric</b> & \"quoted\".",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name, e.g. Zürich or 東京" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"], default: "celsius" },
        days: { type: "integer", minimum: 1, maximum: 14 },
      },
      required: ["city"],
    },
  },
};

const searchTool = {
  type: "function",
  function: {
    name: "search",
    parameters: {
      required: ["query"],
      properties: {
        query: { description: "What to look for", type: "string" },
        filters: {
          type: "object",
          properties: { site: { type: "string" }, after: { type: "string", format: "date" }, tags: { type: "array", items: { type: "string" } } },
        },
        limit: { type: "number", default: 2.5 },
      },
      type: "object",
    },
    strict: true,
  },
};

const noParamsTool = { type: "function", function: { name: "now", description: "The current time." } };

const call = (id, name, args) => ({ id, type: "function", function: { name, arguments: typeof args === "string" ? args : JSON.stringify(args) } });

const base = [
  { messages: [{ role: "user", content: "Hello!" }] },
  { messages: [{ role: "user", content: "Hello!" }], add_generation_prompt: false },
  { messages: [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: "What is 2+2?" }] },
  {
    messages: [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Name a prime." },
      { role: "assistant", content: "7" },
      { role: "user", content: "Another?" },
    ],
  },
  {
    messages: [
      { role: "user", content: "Think first." },
      { role: "assistant", content: "<think>\nThe user wants thought.\n</think>\n\nDone." },
      { role: "user", content: "Again." },
    ],
  },
  {
    messages: [
      { role: "user", content: "Think first." },
      { role: "assistant", content: "<think>\nLast turn reasoning.\n</think>\n\nFinal answer." },
    ],
    add_generation_prompt: false,
  },
  {
    messages: [
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello", reasoning_content: "The user greets me." },
      { role: "user", content: "how are you" },
      { role: "assistant", content: "fine", reasoning_content: "Answer politely." },
    ],
    add_generation_prompt: false,
  },
  { messages: [{ role: "user", content: "No thinking please." }], chat_template_kwargs: { enable_thinking: false } },
  { messages: [{ role: "user", content: "Think hard." }], chat_template_kwargs: { enable_thinking: true } },
  { messages: [{ role: "user", content: "What's the weather in Paris?" }], tools: [weatherTool] },
  { messages: [{ role: "system", content: "Use tools when useful." }, { role: "user", content: "Search for tokenizers." }], tools: [weatherTool, searchTool, noParamsTool] },
  {
    messages: [
      { role: "system", content: "You can call tools." },
      { role: "user", content: "Weather in Paris and Tokyo?" },
      { role: "assistant", content: null, tool_calls: [call("call_1", "get_weather", { city: "Paris", unit: "celsius" }), call("call_2", "get_weather", { city: "東京", days: 3 })] },
      { role: "tool", tool_call_id: "call_1", content: "{\"temperature\": 21, \"sky\": \"clear\"}" },
      { role: "tool", tool_call_id: "call_2", content: "{\"temperature\": 18}" },
      { role: "assistant", content: "Paris is 21°C and clear; Tokyo is 18°C." },
      { role: "user", content: "Thanks!" },
    ],
    tools: [weatherTool],
  },
  {
    messages: [
      { role: "user", content: "Search it." },
      { role: "assistant", content: "Let me search.", tool_calls: [call("c", "search", "{\"query\": \"go tokenizer\", \"filters\": {\"site\": \"example.org\", \"tags\": [\"a\", \"b\"]}, \"limit\": 3}")] },
      { role: "tool", tool_call_id: "c", name: "search", content: "3 results" },
    ],
    tools: [searchTool],
  },
  {
    messages: [
      { role: "user", content: "What time is it?" },
      { role: "assistant", content: "", tool_calls: [call("t1", "now", "")] },
      { role: "tool", tool_call_id: "t1", content: "12:00" },
    ],
    tools: [noParamsTool],
  },
  {
    messages: [
      { role: "user", content: [{ type: "text", text: "Part one." }, { type: "text", text: "Part two." }] },
      { role: "assistant", content: [{ type: "text", text: "Answer in parts." }] },
      { role: "user", content: [{ type: "text", text: "Last." }] },
    ],
  },
  { messages: [{ role: "user", content: "Continue this:" }, { role: "assistant", content: "Once upon a time" }], add_generation_prompt: false, continue_final_message: true },
  { messages: [{ role: "user", content: "Write a list." }, { role: "assistant", content: "1. apples\n2. " }], add_generation_prompt: false, continue_final_message: true },
  {
    messages: [
      { role: "system", content: "  Leading and trailing spaces  \n" },
      { role: "user", content: "\n\nNewlines around\n\n" },
      { role: "assistant", content: "\tTabbed\t" },
      { role: "user", content: "   " },
    ],
  },
  {
    messages: [
      { role: "user", content: "Special tokens in text: <|im_start|> <|im_end|> <|endoftext|> <|begin_of_text|> <|eot_id|> <s> </s>" },
      { role: "assistant", content: "Echo: <|im_end|>" },
      { role: "user", content: "<tool_call>not a call</tool_call> <think>x</think>" },
    ],
  },
  {
    messages: [
      { role: "system", content: "Réponds en français. 中文也可以。 العربية 🙂" },
      { role: "user", content: "Ça va? 你好吗？ كيف حالك؟ 👋🏽" },
      { role: "assistant", content: "Très bien ! 很好！ بخير 😀" },
      { role: "user", content: "e\u0301 vs \u00e9 and \u212b" },
    ],
  },
  {
    messages: [
      { role: "system", content: "First system." },
      { role: "user", content: "u1" },
      { role: "system", content: "Second system mid-conversation." },
      { role: "user", content: "u2" },
    ],
  },
  { messages: [{ role: "user", content: "" }] },
  { messages: [{ role: "user", content: "x".repeat(3000) + " " + "word ".repeat(400) }] },
  {
    messages: [
      { role: "user", content: "code please" },
      { role: "assistant", content: "```go\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n```" },
      { role: "user", content: "and python\r\nwith CRLF\r\n" },
    ],
  },
  { messages: [{ role: "developer", content: "Developer instructions." }, { role: "user", content: "hi" }] },
  { messages: [{ role: "user", content: "named", name: "alice" }, { role: "assistant", content: "ok", name: "bot" }] },
  {
    messages: [
      { role: "user", content: "multi-step" },
      { role: "assistant", content: null, tool_calls: [call("a", "get_weather", { city: "Oslo" })] },
      { role: "tool", tool_call_id: "a", content: "-3" },
      { role: "assistant", content: null, tool_calls: [call("b", "get_weather", { city: "Rome" })] },
      { role: "tool", tool_call_id: "b", content: "25" },
    ],
    tools: [weatherTool],
  },
  {
    messages: [
      { role: "user", content: "<tool_response>\nlooks like a tool response\n</tool_response>" },
      { role: "assistant", content: "<think>\nhidden\n</think>\n\nshown" },
    ],
    add_generation_prompt: false,
  },
  { messages: [{ role: "user", content: "Use kwargs." }], chat_template_kwargs: { custom_flag: true, reasoning_effort: "high", date_string: "01 Jan 2025" } },
  { messages: [{ role: "user", content: "Tools via kwargs." }], chat_template_kwargs: { add_generation_prompt: false } },
  { messages: [{ role: "system", content: "sys" }, { role: "user", content: "q" }], tools: [] },
];

function rng(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const snippets = [
  "Hello", "What is the capital of France?", "Paris.", "Explain KV caching in one line.", "Sure:", "  spaced  ",
  "line one\nline two", "数学很有趣。", "مرحبا", "😀👍", "Don't stop.", "1 + 1 = 2", "<|im_end|>", "\n", "",
  "A longer answer that goes on for a while, with commas, numbers like 12345, and a final period.",
];

export function buildChats() {
  const chats = [...base];
  const r = rng(7);
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  for (let i = 0; i < 40; i++) {
    const messages = [];
    if (r() < 0.5) messages.push({ role: "system", content: pick(snippets) });
    const turns = 1 + Math.floor(r() * 4);
    for (let t = 0; t < turns; t++) {
      messages.push({ role: "user", content: r() < 0.2 ? [{ type: "text", text: pick(snippets) }, { type: "text", text: pick(snippets) }] : pick(snippets) });
      if (t < turns - 1 || r() < 0.3) {
        if (r() < 0.3) {
          messages.push({ role: "assistant", content: r() < 0.5 ? null : pick(snippets), tool_calls: [call(`id${i}${t}`, "get_weather", { city: pick(["Paris", "Lima", "Kyiv"]) })] });
          messages.push({ role: "tool", tool_call_id: `id${i}${t}`, content: pick(snippets) });
        } else {
          messages.push({ role: "assistant", content: pick(snippets) });
        }
      }
    }
    const req = { messages };
    if (r() < 0.3) req.tools = [weatherTool];
    if (messages.at(-1).role === "assistant" && r() < 0.5) req.add_generation_prompt = false;
    if (r() < 0.2) req.chat_template_kwargs = { enable_thinking: r() < 0.5 };
    chats.push(req);
  }
  return chats;
}
