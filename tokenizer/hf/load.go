package hf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/strata-llm/strata/tokenizer/chattemplate"
)

// ErrUnsupported is wrapped by the load error of a tokenizer.json component
// (or setting) this package does not implement; the error names it.
var ErrUnsupported = errors.New("not supported")

func unsupported(typ string) error { return fmt.Errorf("type %q: %w", typ, ErrUnsupported) }

// errIn prefixes an error with the component (a tokenizer.json type name)
// it comes from.
func errIn(component string, err error) error { return fmt.Errorf("%s: %w", component, err) }

// componentType reads a component's "type" ("" for null or an absent one).
func componentType(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var c struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", err
	}
	return c.Type, nil
}

// maxFileSize bounds what Load reads; the largest real tokenizer.json files
// are tens of megabytes.
const maxFileSize = 512 << 20

// Files are a model directory's tokenizer files, as Load reads them.
type Files struct {
	// Tokenizer is tokenizer.json (required).
	Tokenizer []byte
	// Config is tokenizer_config.json: special tokens, chat templates.
	Config []byte
	// SpecialTokensMap is special_tokens_map.json, whose entries override
	// the config's, as in transformers.
	SpecialTokensMap []byte
	// ChatTemplates are chat_template.jinja (named "default") and
	// additional_chat_templates/NAME.jinja; they replace the config's.
	ChatTemplates map[string]string
}

// Option configures New and Load.
type Option func(*options)

type options struct {
	now               func() time.Time
	segmentCacheBytes *int
}

// WithClock sets the clock of the chat template's strftime_now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Load reads the tokenizer of the model directory dir: tokenizer.json,
// tokenizer_config.json and, if present, special_tokens_map.json,
// chat_template.jinja and additional_chat_templates/*.jinja, the files vLLM
// reads through transformers.
func Load(dir string, opts ...Option) (*Tokenizer, error) {
	var f Files
	var err error
	if f.Tokenizer, err = readFile(dir, "tokenizer.json", true); err != nil {
		return nil, err
	}
	if f.Config, err = readFile(dir, "tokenizer_config.json", false); err != nil {
		return nil, err
	}
	if f.SpecialTokensMap, err = readFile(dir, "special_tokens_map.json", false); err != nil {
		return nil, err
	}
	f.ChatTemplates = map[string]string{}
	if b, err := readFile(dir, "chat_template.jinja", false); err != nil {
		return nil, err
	} else if b != nil {
		f.ChatTemplates[chattemplate.DefaultName] = string(b)
	}
	extra, err := filepath.Glob(filepath.Join(dir, "additional_chat_templates", "*.jinja"))
	if err != nil {
		return nil, err
	}
	for _, p := range extra {
		name := strings.TrimSuffix(filepath.Base(p), ".jinja")
		b, err := readFile(filepath.Dir(p), filepath.Base(p), true)
		if err != nil {
			return nil, err
		}
		f.ChatTemplates[name] = string(b)
	}
	t, err := New(f, opts...)
	if err != nil {
		return nil, fmt.Errorf("tokenizer in %s: %w", dir, err)
	}
	return t, nil
}

func readFile(dir, name string, required bool) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		if !required && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxFileSize)
	}
	return b, nil
}

type tokenizerJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	Model         json.RawMessage `json:"model"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	// Truncation and padding are set per call by transformers, and vLLM
	// tokenizes without them: they are ignored.
}

// specialTokenKeys are transformers' SPECIAL_TOKENS_ATTRIBUTES, in order.
var specialTokenKeys = []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "additional_special_tokens"}

// New builds a tokenizer from the contents of its files.
func New(f Files, opts ...Option) (*Tokenizer, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var tj tokenizerJSON
	if err := json.Unmarshal(f.Tokenizer, &tj); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	var cfg map[string]json.RawMessage
	if len(f.Config) > 0 {
		if err := json.Unmarshal(f.Config, &cfg); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	if len(f.SpecialTokensMap) > 0 {
		var stm map[string]json.RawMessage
		if err := json.Unmarshal(f.SpecialTokensMap, &stm); err != nil {
			return nil, fmt.Errorf("special_tokens_map.json: %w", err)
		}
		if cfg == nil {
			cfg = map[string]json.RawMessage{}
		}
		for _, k := range specialTokenKeys {
			if v, ok := stm[k]; ok {
				cfg[k] = v
			}
		}
	}

	t := &Tokenizer{}
	cacheBytes := DefaultSegmentCacheBytes
	if o.segmentCacheBytes != nil {
		cacheBytes = *o.segmentCacheBytes
	}
	t.segments = newSegmentCache(cacheBytes)
	var err error
	if t.norm, err = newNormalizer(tj.Normalizer); err != nil {
		return nil, fmt.Errorf("tokenizer.json: normalizer: %w", err)
	}
	spec, err := newPreTokenizer(tj.PreTokenizer)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: pre_tokenizer: %w", err)
	}
	t.pre = spec.pre
	if t.model, err = newModel(tj.Model, spec.byteLevel); err != nil {
		return nil, fmt.Errorf("tokenizer.json: model: %w", err)
	}
	if t.post, err = newPostProcessor(tj.PostProcessor); err != nil {
		return nil, fmt.Errorf("tokenizer.json: post_processor: %w", err)
	}
	if t.dec, err = newDecoder(tj.Decoder); err != nil {
		return nil, fmt.Errorf("tokenizer.json: decoder: %w", err)
	}
	added, err := mergeAddedTokens(tj.AddedTokens, cfg["added_tokens_decoder"])
	if err != nil {
		return nil, err
	}
	if err := t.setAddedTokens(added); err != nil {
		return nil, err
	}
	special, err := specialTokensMap(cfg)
	if err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %w", err)
	}
	if err := t.llamaPostProcessor(cfg, special); err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %w", err)
	}
	if eos, ok := special["eos_token"].(string); ok {
		if id, ok := t.TokenID(eos); ok {
			t.eos, t.hasEOS = id, true
		}
	}
	templates, err := chatTemplates(cfg["chat_template"], f.ChatTemplates)
	if err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %w", err)
	}
	if len(templates) > 0 {
		if t.chat, err = chattemplate.New(chattemplate.Config{Templates: templates, SpecialTokens: special, Now: o.now}); err != nil {
			return nil, err
		}
	}
	t.textTokens = t.findTextTokens()
	return t, nil
}

// mergeAddedTokens adds to tokenizer.json's added tokens those that only
// tokenizer_config.json's added_tokens_decoder lists, as transformers does
// when it loads a fast tokenizer.
func mergeAddedTokens(fromJSON []addedToken, decoderRaw json.RawMessage) ([]addedToken, error) {
	if len(decoderRaw) == 0 {
		return fromJSON, nil
	}
	var dec map[string]addedToken
	if err := json.Unmarshal(decoderRaw, &dec); err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: added_tokens_decoder: %w", err)
	}
	have := map[uint32]bool{}
	for _, a := range fromJSON {
		have[a.ID] = true
	}
	ids := make([]int, 0, len(dec))
	for k := range dec {
		id, err := strconv.ParseUint(k, 10, 32)
		if err != nil || id >= maxVocabID {
			return nil, fmt.Errorf("tokenizer_config.json: added_tokens_decoder: bad id %q", k)
		}
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	out := fromJSON
	for _, id := range ids {
		if have[uint32(id)] {
			continue
		}
		a := dec[strconv.Itoa(id)]
		a.ID = uint32(id)
		out = append(out, a)
	}
	return out, nil
}

// specialTokensMap is transformers' special_tokens_map: the special token
// attributes that are set, as strings (additional_special_tokens as a list).
func specialTokensMap(cfg map[string]json.RawMessage) (map[string]any, error) {
	out := map[string]any{}
	for _, k := range specialTokenKeys {
		raw, ok := cfg[k]
		if !ok {
			continue
		}
		if k == "additional_special_tokens" {
			var list []json.RawMessage
			if err := json.Unmarshal(raw, &list); err != nil && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			var names []string
			for _, item := range list {
				s, err := tokenContent(item)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", k, err)
				}
				if s != "" {
					names = append(names, s)
				}
			}
			if len(names) > 0 {
				out[k] = names
			}
			continue
		}
		s, err := tokenContent(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		if s != "" {
			out[k] = s
		}
	}
	return out, nil
}

// tokenContent reads a special token written as a string, as an AddedToken
// object ({"content": …}) or as null.
func tokenContent(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return "", fmt.Errorf("want a string or {\"content\": …}, got %s", raw)
	}
	return *obj.Content, nil
}

// chatTemplates reads the config's chat_template (a string, or a list of
// {"name", "template"}), replaced by the template files when there are any.
func chatTemplates(raw json.RawMessage, files map[string]string) (map[string]string, error) {
	if len(files) > 0 {
		return files, nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return map[string]string{chattemplate.DefaultName: one}, nil
	}
	var list []struct {
		Name     *string `json:"name"`
		Template *string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("chat_template: want a string or a list of {\"name\", \"template\"}: %w", err)
	}
	out := map[string]string{}
	for i, t := range list {
		if t.Name == nil || t.Template == nil {
			return nil, fmt.Errorf("chat_template[%d]: want a name and a template", i)
		}
		out[*t.Name] = *t.Template
	}
	return out, nil
}

// llamaTokenizerClasses are transformers' fast tokenizer classes that
// rebuild the post-processor from add_bos_token and add_eos_token
// (update_post_processor), ignoring tokenizer.json's.
var llamaTokenizerClasses = map[string]bool{
	"LlamaTokenizer": true, "LlamaTokenizerFast": true,
	"CodeLlamaTokenizer": true, "CodeLlamaTokenizerFast": true,
	"GemmaTokenizer": true, "GemmaTokenizerFast": true,
}

func (t *Tokenizer) llamaPostProcessor(cfg map[string]json.RawMessage, special map[string]any) error {
	var class string
	if raw, ok := cfg["tokenizer_class"]; ok {
		_ = json.Unmarshal(raw, &class)
	}
	if !llamaTokenizerClasses[class] {
		return nil
	}
	flag := func(key string, def bool) (bool, error) {
		raw, ok := cfg[key]
		if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return def, nil
		}
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return false, fmt.Errorf("%s: %w", key, err)
		}
		return b, nil
	}
	addBOS, err := flag("add_bos_token", true)
	if err != nil {
		return err
	}
	addEOS, err := flag("add_eos_token", false)
	if err != nil {
		return err
	}
	var tmpl template
	for _, side := range []struct {
		add  bool
		key  string
		dest *[]uint32
	}{{addBOS, "bos_token", &tmpl.prefix}, {addEOS, "eos_token", &tmpl.suffix}} {
		if !side.add {
			continue
		}
		name, _ := special[side.key].(string)
		id, ok := t.TokenID(name)
		if name == "" || !ok {
			return fmt.Errorf("%s: %s %q is not a token (%s adds it)", class, side.key, name, side.key)
		}
		*side.dest = []uint32{id}
	}
	t.post = tmpl
	return nil
}
