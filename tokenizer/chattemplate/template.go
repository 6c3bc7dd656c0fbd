// Package chattemplate renders a model's Hugging Face chat template the way
// vLLM's OpenAI chat endpoint does: messages rebuilt as vLLM's
// parse_chat_messages builds them (content as a string or as parts, by the
// content format vLLM detects in the template), tools as vLLM dumps them,
// chat_template_kwargs as extra variables, and the template run as
// transformers' apply_chat_template runs it (Jinja2 with trim_blocks and
// lstrip_blocks, json.dumps as tojson, raise_exception and strftime_now).
//
// The Jinja engine is github.com/ardanlabs/jinja; prepare.go works around
// the places where it renders differently from Jinja2.
package chattemplate

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"

	"github.com/strata-llm/strata/tokenizer"
)

// DefaultName is the name of a model's main template; a model with tool
// use support may have one named "tool_use".
const (
	DefaultName = "default"
	ToolUseName = "tool_use"
)

// ErrRaised wraps the message of a template's raise_exception call.
var ErrRaised = errors.New("chat template raised an exception")

// Config is a model's templates and the variables they see.
type Config struct {
	// Templates maps names to Jinja sources. A single template is named
	// DefaultName.
	Templates map[string]string
	// SpecialTokens is the tokenizer's special_tokens_map (bos_token,
	// eos_token… as strings; additional_special_tokens as []string).
	SpecialTokens map[string]any
	// Now is strftime_now's clock; nil means time.Now.
	Now func() time.Time
}

// Template renders chat requests. It is safe for concurrent use.
type Template struct {
	templates map[string]*compiled
	special   map[string]jinja.Value
	now       func() time.Time
}

type compiled struct {
	tmpl   *jinja.Template
	format ContentFormat
}

// New compiles the templates.
func New(cfg Config) (*Template, error) {
	if len(cfg.Templates) == 0 {
		return nil, errors.New("chat template: none given")
	}
	t := &Template{templates: map[string]*compiled{}, special: map[string]jinja.Value{}, now: cfg.Now}
	if t.now == nil {
		t.now = time.Now
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Templates)) {
		c, err := compile(cfg.Templates[name])
		if err != nil {
			return nil, fmt.Errorf("chat template %q: %w", name, err)
		}
		t.templates[name] = c
	}
	for k, v := range cfg.SpecialTokens {
		val, err := toValue(v)
		if err != nil {
			return nil, fmt.Errorf("chat template: special token %s: %w", k, err)
		}
		t.special[k] = val
	}
	return t, nil
}

// errPanic wraps a panic of the template engine, which is turned into an
// error: no template or request may crash the process.
var errPanic = errors.New("chat template engine failed")

func recoverPanic(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %v", errPanic, r)
	}
}

func compile(src string) (c *compiled, err error) {
	defer recoverPanic(&err)
	p, err := prepare(src)
	if err != nil {
		return nil, err
	}
	tmpl, err := jinja.Compile(p.source)
	if err != nil {
		return nil, err
	}
	var stmts []statement
	for _, toks := range p.statements {
		if s, ok := parseStatement(toks); ok {
			stmts = append(stmts, s)
		}
	}
	return &compiled{tmpl: tmpl, format: detectContentFormat(stmts)}, nil
}

// Names lists the template names.
func (t *Template) Names() []string { return slices.Sorted(maps.Keys(t.templates)) }

// ContentFormat is the content format detected in the named template.
func (t *Template) ContentFormat(name string) (ContentFormat, bool) {
	c, ok := t.templates[name]
	if !ok {
		return "", false
	}
	return c.format, true
}

// choose picks the template as transformers' get_chat_template does: the
// tool_use template when the request has tools and the model has one, else
// the default.
func (t *Template) choose(hasTools bool) (*compiled, string, error) {
	if hasTools {
		if c, ok := t.templates[ToolUseName]; ok {
			return c, ToolUseName, nil
		}
	}
	if c, ok := t.templates[DefaultName]; ok {
		return c, DefaultName, nil
	}
	return nil, "", fmt.Errorf("chat template: the model has templates %v and none is %q", t.Names(), DefaultName)
}

// Render renders a request into the prompt text.
func (t *Template) Render(req tokenizer.ChatRequest) (string, error) {
	// vLLM lets chat_template_kwargs override its own arguments.
	addGen, contFinal := jinja.NewBool(req.AddGenerationPrompt), req.ContinueFinalMessage
	var toolsVal jinja.Value
	var err error
	hasTools := req.Tools != nil
	if req.Tools != nil {
		if toolsVal, err = tools(req.Tools); err != nil {
			return "", err
		}
	} else {
		toolsVal = jinja.None()
	}
	documents := jinja.None()
	extra := map[string]jinja.Value{}
	for k, v := range req.Kwargs {
		val, err := toValue(v)
		if err != nil {
			return "", fmt.Errorf("chat_template_kwargs: %s: %w", k, err)
		}
		switch k {
		case "chat_template", "tokenize", "messages", "conversation":
			return "", fmt.Errorf("chat_template_kwargs: %q may not be set", k)
		case "add_generation_prompt":
			addGen = val
		case "continue_final_message":
			contFinal = val.IsTruthy()
		case "tools":
			toolsVal, hasTools = val, !val.IsNone()
		case "documents":
			documents = val
		default:
			extra[k] = val
		}
	}
	if addGen.IsTruthy() && contFinal {
		return "", errors.New("add_generation_prompt and continue_final_message cannot both be set")
	}
	c, name, err := t.choose(hasTools)
	if err != nil {
		return "", err
	}
	conv, err := conversation(req.Messages, c.format)
	if err != nil {
		return "", err
	}
	data := make(map[string]jinja.Value, len(t.special)+len(extra)+8)
	maps.Copy(data, t.special)
	maps.Copy(data, extra)
	data["messages"] = conv
	data["tools"] = toolsVal
	data["documents"] = documents
	data["add_generation_prompt"] = addGen
	data["raise_exception"] = jinja.NewCallable("raise_exception", raiseException)
	data["strftime_now"] = jinja.NewCallable("strftime_now", t.strftimeNow)
	data[tojsonFilter] = jinja.NewCallable(tojsonFilter, tojson)
	data[strFilter] = jinja.NewCallable(strFilter, strFilterFn)
	data[trimFilter] = jinja.NewCallable(trimFilter, trimFilterFn)
	out, err := renderValues(c.tmpl, data)
	if err != nil {
		return "", fmt.Errorf("chat template %q: %w", name, err)
	}
	if contFinal {
		return continueFinal(out, conv)
	}
	return out, nil
}

func renderValues(tmpl *jinja.Template, data map[string]jinja.Value) (out string, err error) {
	defer recoverPanic(&err)
	return tmpl.RenderValues(data)
}

func raiseException(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	msg := ""
	if len(args) > 0 && args[0].IsString() {
		msg = args[0].AsString()
	}
	return jinja.Undefined(), fmt.Errorf("%w: %s", ErrRaised, msg)
}

func (t *Template) strftimeNow(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) != 1 || !args[0].IsString() {
		return jinja.Undefined(), errors.New("strftime_now: want one format string")
	}
	return jinja.NewString(strftime(t.now(), args[0].AsString())), nil
}

// continueFinal cuts the prompt after the final message's text, so the model
// continues that message: transformers' continue_final_message.
func continueFinal(rendered string, conv jinja.Value) (string, error) {
	items := conv.AsList().Items
	if len(items) == 0 {
		return "", errors.New("continue_final_message: no messages")
	}
	content, _ := items[len(items)-1].AsDict().Get("content")
	final := ""
	switch {
	case content.IsString():
		final = content.AsString()
	case content.IsList():
		found := false
		for i := content.AsList().Len() - 1; i >= 0; i-- {
			if text, ok := content.AsList().Get(i).AsDict().Get("text"); ok && text.IsString() {
				final, found = text.AsString(), true
				break
			}
		}
		if !found {
			return "", errors.New("continue_final_message: the final message has no text to continue")
		}
	}
	stripped := strings.TrimFunc(final, pyIsSpace)
	loc := strings.LastIndex(rendered, stripped)
	if loc < 0 {
		return "", errors.New("continue_final_message: the final message does not appear in the rendered chat")
	}
	lstripped := strings.TrimLeftFunc(final, pyIsSpace)
	if end := loc + len(lstripped); end <= len(rendered) && rendered[loc:end] == final {
		return rendered[:end], nil
	}
	return rendered[:loc+len(stripped)], nil
}
