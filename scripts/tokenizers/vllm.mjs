// What vLLM's chat endpoint does to a request before and after the chat
// template, written independently of the Go code it checks: content format
// detection (vllm/entrypoints/chat_utils.py, here over @huggingface/jinja's
// AST instead of jinja2's), the conversation and tools as vLLM builds them,
// transformers' template variables and continue_final_message.
import { Environment, Interpreter, Template, parse, tokenize } from "@huggingface/jinja";

// Every AST node under root, depth first.
function* walk(node) {
  if (node === null || typeof node !== "object") return;
  if (Array.isArray(node)) {
    for (const n of node) yield* walk(n);
    return;
  }
  if (node instanceof Map) {
    for (const [k, v] of node) {
      yield* walk(k);
      yield* walk(v);
    }
    return;
  }
  if (typeof node.type === "string") yield node;
  for (const v of Object.values(node)) if (v && typeof v === "object") yield* walk(v);
}

// jinja2 parses `for x in xs if c` as For(iter=xs, test=c); this AST as a
// SelectExpression.
const loopIter = (f) => (f.iterable.type === "SelectExpression" ? f.iterable.lhs : f.iterable);

function isVarAccess(node, name) {
  return node.type === "Identifier" && node.value === name;
}

function isAttrAccess(node, name, key) {
  if (node.type !== "MemberExpression" || !isVarAccess(node.object, name)) return false;
  if (node.computed) return node.property.type === "StringLiteral" && node.property.value === key;
  return node.property.type === "Identifier" && node.property.value === key;
}

function isVarOrElemsAccess(node, name, key) {
  if (node.type === "FilterExpression") return isVarOrElemsAccess(node.operand, name, key);
  if (node.type === "TestExpression") return isVarOrElemsAccess(node.operand, name, key);
  if (node.type === "MemberExpression" && node.computed && node.property.type === "SliceExpression") {
    return isVarOrElemsAccess(node.object, name, key);
  }
  return key ? isAttrAccess(node, name, key) : isVarAccess(node, name);
}

class DetectionError extends Error {}

// vLLM's _detect_content_format with default "string".
export function detectContentFormat(source) {
  let ast;
  try {
    ast = parse(tokenize(source, { lstrip_blocks: true, trim_blocks: true }));
  } catch {
    return "string";
  }
  const nodes = [...walk(ast)];
  const assigns = nodes.filter((n) => n.type === "Set" && n.value !== null);
  const fors = nodes.filter((n) => n.type === "For");
  try {
    const lists = ["messages"];
    for (let i = 0; i < lists.length; i++) {
      for (const a of assigns) {
        if (!isVarOrElemsAccess(a.value, lists[i])) continue;
        if (a.assignee.type !== "Identifier") throw new DetectionError();
        if (!lists.includes(a.assignee.value)) lists.push(a.assignee.value);
      }
    }
    const messageVars = [];
    for (const f of fors) {
      for (const v of lists) {
        if (isVarOrElemsAccess(loopIter(f), v)) {
          if (f.loopvar.type !== "Identifier") throw new DetectionError();
          messageVars.push(f.loopvar.value);
          break;
        }
      }
    }
    for (const f of fors) {
      for (const v of messageVars) {
        if (isVarOrElemsAccess(loopIter(f), v, "content")) {
          if (f.loopvar.type !== "Identifier") throw new DetectionError();
          return "openai";
        }
      }
    }
  } catch (e) {
    if (e instanceof DetectionError) return "string";
    throw e;
  }
  return "string";
}

function contentParts(content) {
  if (content === null || content === undefined) return [];
  if (typeof content === "string") return [content];
  if (!Array.isArray(content)) throw new Error("bad content");
  return content.map((p) => {
    if (p.type === "text" || p.type === "input_text") return p.text;
    if (p.type === "refusal") return p.refusal;
    throw new Error(`unsupported content part ${p.type}`);
  });
}

// vLLM's parse_chat_messages and _postprocess_messages.
export function conversation(messages, format) {
  return messages.map((m) => {
    const parts = contentParts(m.content);
    const out = {
      role: m.role,
      content: format === "openai" ? parts.map((text) => ({ type: "text", text })) : parts.join("\n"),
    };
    if (m.role === "assistant") {
      if (m.tool_calls !== undefined && m.tool_calls !== null) {
        out.tool_calls = m.tool_calls.map((c) => {
          const call = structuredClone(c);
          const args = call.function.arguments;
          if (args === undefined || args === null || args === "") call.function.arguments = {};
          else if (typeof args === "string") call.function.arguments = JSON.parse(args);
          return call;
        });
      }
      const reasoning = m.reasoning || m.reasoning_content;
      if (reasoning !== undefined && reasoning !== null) {
        out.reasoning = reasoning;
        out.reasoning_content = reasoning;
      }
    } else if (m.role === "tool") {
      if ("tool_call_id" in m) out.tool_call_id = m.tool_call_id;
    }
    if (typeof m.name === "string") out.name = m.name;
    return out;
  });
}

// [tool.model_dump() for tool in request.tools]
export function tools(ts) {
  if (ts === undefined || ts === null) return null;
  return ts.map((t) => {
    const { name, description = null, parameters = null, ...fnRest } = t.function;
    const { type, function: _, ...rest } = t;
    return { type: "function", function: { name, description, parameters, ...fnRest }, ...rest };
  });
}

// transformers' special_tokens_map from tokenizer_config.json.
export function specialTokensMap(config) {
  const out = {};
  const content = (v) => (typeof v === "string" ? v : v && typeof v === "object" ? v.content : null);
  for (const k of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
    const v = content(config[k]);
    if (v) out[k] = v;
  }
  const extra = (config.additional_special_tokens ?? []).map(content).filter((x) => x);
  if (extra.length > 0) out.additional_special_tokens = extra;
  return out;
}

// Python's str.isspace.
const isSpace = (c) => /[\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u.test(c);
const strip = (s) => lstrip(rstrip(s));
const lstrip = (s) => {
  const cs = [...s];
  let i = 0;
  while (i < cs.length && isSpace(cs[i])) i++;
  return cs.slice(i).join("");
};
const rstrip = (s) => {
  const cs = [...s];
  let j = cs.length;
  while (j > 0 && isSpace(cs[j - 1])) j--;
  return cs.slice(0, j).join("");
};

// Renders an OpenAI request body with a template as vLLM does; throws where
// vLLM answers 400.
export function render(templates, special, body) {
  const kwargs = { ...(body.chat_template_kwargs ?? {}) };
  let addGen = body.add_generation_prompt ?? true;
  let contFinal = body.continue_final_message ?? false;
  let toolList = tools(body.tools);
  let documents = null;
  for (const k of ["chat_template", "tokenize", "messages", "conversation"]) if (k in kwargs) throw new Error(`kwarg ${k}`);
  if ("add_generation_prompt" in kwargs) addGen = kwargs.add_generation_prompt;
  if ("continue_final_message" in kwargs) contFinal = kwargs.continue_final_message;
  if ("tools" in kwargs) toolList = kwargs.tools;
  if ("documents" in kwargs) documents = kwargs.documents;
  for (const k of ["add_generation_prompt", "continue_final_message", "tools", "documents"]) delete kwargs[k];
  if (addGen && contFinal) throw new Error("add_generation_prompt and continue_final_message");
  const name = toolList !== null && templates.tool_use !== undefined ? "tool_use" : "default";
  const source = templates[name];
  if (source === undefined) throw new Error("no default template");
  const conv = conversation(body.messages, detectContentFormat(source));
  let out = new Template(source).render({
    ...special,
    ...kwargs,
    messages: conv,
    tools: toolList,
    documents,
    add_generation_prompt: addGen,
  });
  if (contFinal) {
    let final = conv[conv.length - 1].content;
    if (Array.isArray(final)) final = [...final].reverse().find((b) => "text" in b).text;
    const loc = out.lastIndexOf(strip(final));
    if (loc < 0) throw new Error("final message not in the chat");
    const l = lstrip(final);
    out = out.slice(loc, loc + l.length) === final ? out.slice(0, loc + l.length) : out.slice(0, loc + strip(final).length);
  }
  return out;
}

// Python's repr() of a float: shortest digits, positional notation for
// exponents in [-4, 16).
export function pyFloatRepr(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [m, e] = Math.abs(x).toExponential().split("e");
  const digits = m.replace(".", "");
  const exp = Number(e);
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
    const int = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
    const frac = digits.slice(exp + 1) || "0";
    return `${sign}${int}.${frac}`;
  }
  const mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${mant}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
}

// Python's repr() of a str.
function pyStrRepr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const c of s) {
    const cp = c.codePointAt(0);
    if (c === quote || c === "\\") out += "\\" + c;
    else if (c === "\t") out += "\\t";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (cp < 0x20 || cp === 0x7f) out += "\\x" + cp.toString(16).padStart(2, "0");
    else if (cp < 0x7f || (c === " " || /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(c))) out += c;
    else if (cp <= 0xff) out += "\\x" + cp.toString(16).padStart(2, "0");
    else if (cp <= 0xffff) out += "\\u" + cp.toString(16).padStart(4, "0");
    else out += "\\U" + cp.toString(16).padStart(8, "0");
  }
  return out + quote;
}

// Python's repr() of a @huggingface/jinja runtime value.
function pyRepr(v) {
  switch (v.type) {
    case "StringValue":
      return pyStrRepr(v.value);
    case "IntegerValue":
      return String(v.value);
    case "FloatValue":
      return pyFloatRepr(v.value);
    case "BooleanValue":
      return v.value ? "True" : "False";
    case "NullValue":
    case "UndefinedValue":
      return "None";
    case "ArrayValue":
      return `[${v.value.map(pyRepr).join(", ")}]`;
    case "TupleValue":
      return v.value.length === 1 ? `(${pyRepr(v.value[0])},)` : `(${v.value.map(pyRepr).join(", ")})`;
    case "ObjectValue":
    case "KeywordArgumentsValue":
      return `{${[...v.value].map(([k, x]) => `${pyStrRepr(k)}: ${pyRepr(x)}`).join(", ")}}`;
  }
  return String(v.value);
}

const expressionTypes = new Set([
  "MemberExpression", "CallExpression", "Identifier", "IntegerLiteral", "FloatLiteral", "StringLiteral", "ArrayLiteral",
  "TupleLiteral", "ObjectLiteral", "BinaryExpression", "FilterExpression", "SelectExpression", "TestExpression",
  "UnaryExpression", "SliceExpression", "Ternary",
]);

// Makes @huggingface/jinja write values as Jinja2 does, with Python's str(),
// in {{ }} and in the string and trim filters: None, True and False, lists
// and dicts as their Python repr, floats as Python writes them. (It writes
// JavaScript's forms: "", true, JSON.) Adds Jinja2's `is float` test.
export function installPythonStr() {
  const env = new Environment();
  env.set("probe", [true, null, 1.5, {}, [], "s"]);
  const [b, , f, o, a, s] = env.lookupVariable("probe").value;
  const StringValue = s.constructor;
  Object.getPrototypeOf(b).toString = function () {
    return this.value ? "True" : "False";
  };
  Object.getPrototypeOf(f).toString = function () {
    return pyFloatRepr(this.value);
  };
  for (const proto of [Object.getPrototypeOf(o), Object.getPrototypeOf(a)]) {
    proto.toString = function () {
      return pyRepr(this);
    };
  }
  const applyFilter = Interpreter.prototype.applyFilter;
  Interpreter.prototype.applyFilter = function (operand, filterNode, environment) {
    const str = (v) => (v.type === "StringValue" ? v.value : v.type === "UndefinedValue" ? "" : pyRepr(v));
    if (filterNode.type === "Identifier" && filterNode.value === "string") {
      return operand.type === "StringValue" ? operand : new StringValue(str(operand));
    }
    // trim is soft_str(value).strip(): it takes any value.
    if (filterNode.type === "Identifier" && filterNode.value === "trim" && operand.type !== "StringValue") {
      return new StringValue(strip(str(operand)));
    }
    return applyFilter.call(this, operand, filterNode, environment);
  };
  // Jinja2's `is float`, which the reference lacks.
  Environment.TESTS.set("float", (operand) => operand.type === "FloatValue");
  Interpreter.prototype.evaluateBlock = function (statements, environment) {
    let result = "";
    for (const statement of statements) {
      const v = this.evaluate(statement, environment);
      if (v.type === "NullValue") {
        if (expressionTypes.has(statement.type)) result += "None";
      } else if (v.type !== "UndefinedValue") {
        result += v.toString();
      }
    }
    return new StringValue(result);
  };
}
