package chattemplate

import "slices"

// ContentFormat is how a template expects message content, as vLLM detects
// it ("auto" --chat-template-content-format).
type ContentFormat string

const (
	// FormatString templates read content as a string: vLLM joins a
	// message's text parts with "\n" (and makes null content "").
	FormatString ContentFormat = "string"
	// FormatOpenAI templates iterate over content parts: vLLM gives every
	// message's content as a list of {"type": "text", "text": …} parts.
	FormatOpenAI ContentFormat = "openai"
)

// exprKind is the shape of an expression, as far as detection tells them
// apart (the jinja2.nodes classes vLLM tests for).
type exprKind uint8

const (
	exprOther exprKind = iota
	exprName
	exprGetattr  // x.name
	exprConstKey // x['name']
	exprSlice    // x[a:b]
	exprFilter   // x | f
	exprTest     // x is t
)

type expr struct {
	kind  exprKind
	name  string // variable, attribute or key
	inner *expr
}

// statement is a {% for %} or {% set … = … %} tag, parsed.
type statement struct {
	isFor bool
	// target is the assigned variable, "" when it is not a plain name
	// (a tuple, or ns.attr).
	target string
	value  *expr // the loop's iterable or the assigned value
}

// detectContentFormat is vLLM's _detect_content_format: a template is
// "openai" if it loops over the content of a message, where messages are
// the variable messages or a variable assigned from it (also through
// filters, tests and slices), and messages the targets of loops over those.
// As in vLLM, a matching assignment or loop whose target is not a plain name
// makes detection fail, which means "string".
func detectContentFormat(stmts []statement) ContentFormat {
	messageLists := []string{"messages"}
	for i := 0; i < len(messageLists); i++ {
		for _, s := range stmts {
			if s.isFor || !isVarOrElemsAccess(s.value, messageLists[i], "") {
				continue
			}
			if s.target == "" {
				return FormatString
			}
			if !slices.Contains(messageLists, s.target) {
				messageLists = append(messageLists, s.target)
			}
		}
	}
	var messageVars []string
	for _, s := range stmts {
		if !s.isFor {
			continue
		}
		for _, v := range messageLists {
			if isVarOrElemsAccess(s.value, v, "") {
				if s.target == "" {
					return FormatString
				}
				messageVars = append(messageVars, s.target)
				break
			}
		}
	}
	for _, s := range stmts {
		if !s.isFor {
			continue
		}
		for _, v := range messageVars {
			if isVarOrElemsAccess(s.value, v, "content") {
				if s.target == "" {
					return FormatString
				}
				return FormatOpenAI
			}
		}
	}
	return FormatString
}

// isVarOrElemsAccess is vLLM's _is_var_or_elems_access: e is the variable
// (or, with key, its key) seen through filters, tests and slices.
func isVarOrElemsAccess(e *expr, varname, key string) bool {
	if e == nil {
		return false
	}
	switch e.kind {
	case exprFilter, exprTest, exprSlice:
		return isVarOrElemsAccess(e.inner, varname, key)
	}
	if key == "" {
		return e.kind == exprName && e.name == varname
	}
	return (e.kind == exprGetattr || e.kind == exprConstKey) && e.name == key &&
		e.inner != nil && e.inner.kind == exprName && e.inner.name == varname
}

// parseStatement reads a for or set tag's tokens; ok is false for anything
// else (a block set, a syntax this parser does not follow).
func parseStatement(toks []token) (statement, bool) {
	p := &exprParser{toks: significant(toks)}
	switch p.next().text {
	case "for":
		target := p.target("in")
		if p.next().text != "in" {
			return statement{}, false
		}
		return statement{isFor: true, target: target, value: p.expr("if", "recursive")}, true
	case "set":
		target := p.target("=")
		if p.next().text != "=" {
			return statement{}, false // {% set x %}…{% endset %}
		}
		return statement{target: target, value: p.expr()}, true
	}
	return statement{}, false
}

func significant(toks []token) []token {
	out := make([]token, 0, len(toks))
	for _, t := range toks {
		if t.kind != tokSpace {
			out = append(out, t)
		}
	}
	return out
}

type exprParser struct {
	toks []token
	pos  int
}

func (p *exprParser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{kind: tokOp}
}

func (p *exprParser) next() token {
	t := p.peek()
	if p.pos < len(p.toks) {
		p.pos++
	}
	return t
}

func (p *exprParser) done() bool { return p.pos >= len(p.toks) }

// target reads an assignment target up to the stop word: the name if it is
// a plain one, "" otherwise.
func (p *exprParser) target(stop string) string {
	start := p.pos
	for !p.done() && (p.peek().text != stop || p.peek().kind == tokString) {
		p.next()
	}
	if p.pos-start == 1 && p.toks[start].kind == tokName {
		return p.toks[start].text
	}
	return ""
}

// expr parses up to one of the stop words (or the end); anything beyond a
// primary with postfixes, filters and tests is exprOther.
func (p *exprParser) expr(stop ...string) *expr {
	e := p.chain()
	if !p.done() && (p.peek().kind != tokName || !slices.Contains(stop, p.peek().text)) {
		return &expr{kind: exprOther}
	}
	return e
}

func (p *exprParser) chain() *expr {
	e := p.primary()
	for {
		t := p.peek()
		switch {
		case t.kind == tokOp && t.text == ".":
			p.next()
			name := p.next()
			if name.kind != tokName && name.kind != tokNumber {
				return &expr{kind: exprOther}
			}
			e = &expr{kind: exprGetattr, name: name.text, inner: e}
		case t.kind == tokOp && t.text == "[":
			p.next()
			sub := p.until("]")
			switch {
			case len(sub) == 1 && sub[0].kind == tokString:
				e = &expr{kind: exprConstKey, name: sub[0].text, inner: e}
			case containsTopLevel(sub, ":"):
				e = &expr{kind: exprSlice, inner: e}
			default:
				e = &expr{kind: exprOther}
			}
		case t.kind == tokOp && t.text == "(":
			p.next()
			p.until(")")
			e = &expr{kind: exprOther}
		case t.kind == tokOp && t.text == "|":
			p.next()
			name := p.next()
			for p.peek().text == "." {
				p.next()
				name.text += "." + p.next().text
			}
			if p.peek().text == "(" {
				p.next()
				p.until(")")
			}
			e = &expr{kind: exprFilter, name: name.text, inner: e}
		case t.kind == tokName && t.text == "is":
			p.next()
			if p.peek().text == "not" {
				p.next()
			}
			name := p.next()
			if p.peek().text == "(" {
				p.next()
				p.until(")")
			}
			e = &expr{kind: exprTest, name: name.text, inner: e}
		default:
			return e
		}
	}
}

func (p *exprParser) primary() *expr {
	t := p.next()
	switch {
	case t.kind == tokName && t.text != "not":
		return &expr{kind: exprName, name: t.text}
	case t.kind == tokOp && t.text == "(":
		inner := p.until(")")
		sub := &exprParser{toks: inner}
		if e := sub.chain(); sub.done() {
			return e // (x) is x; (x, y) is a tuple
		}
	case t.kind == tokOp && (t.text == "[" || t.text == "{"):
		p.until(map[string]string{"[": "]", "{": "}"}[t.text])
	}
	return &expr{kind: exprOther}
}

// until consumes tokens up to the closing bracket that balances the one just
// read and returns those in between.
func (p *exprParser) until(closer string) []token {
	start, depth := p.pos, 0
	for !p.done() {
		t := p.next()
		if t.kind != tokOp {
			continue
		}
		switch t.text {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			if depth == 0 {
				return p.toks[start : p.pos-1]
			}
			depth--
		}
	}
	return p.toks[start:p.pos]
}

func containsTopLevel(toks []token, op string) bool {
	depth := 0
	for _, t := range toks {
		if t.kind != tokOp {
			continue
		}
		switch t.text {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
		case op:
			if depth == 0 {
				return true
			}
		}
	}
	return false
}
