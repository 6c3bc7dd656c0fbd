package sim_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/strata-llm/strata/sim"
	"github.com/strata-llm/strata/test/testutil"
)

// tokenizerDir is a real model tokenizer fetched by `make tokenizer-data`.
func tokenizerDir(t *testing.T, name string) string {
	t.Helper()
	cache := os.Getenv("STRATA_TOKENIZER_CACHE")
	if cache == "" {
		cache = filepath.Join("..", ".cache", "tokenizers")
	}
	dir := filepath.Join(cache, name)
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		testutil.MissingDep(t, "tokenizer files in "+dir, "tokenizer-data")
	}
	return dir
}

// jsonLines reads a JSON-lines file of tokenizer/hf's testdata.
func jsonLines(t *testing.T, file string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "tokenizer", "hf", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		lines = append(lines, slices.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

type tokenizeResult struct {
	Count  int      `json:"count"`
	Tokens []uint32 `json:"tokens"`
}

// With --tokenizer the sim's /tokenize answers with the model's token ids:
// for a prompt (add_special_tokens true by default, as vLLM), and for
// messages rendered with the model's chat template (add_generation_prompt
// true by default, no special tokens added), which is also what a chat
// request prefills.
func TestTokenizeWithModelTokenizer(t *testing.T) {
	for _, name := range []string{"llama3_1", "qwen3"} {
		t.Run(name, func(t *testing.T) {
			s := sim.TestSim(t, func(o *sim.Options) { o.TokenizerDir = tokenizerDir(t, name); o.Engine.MaxModelLen = 1 << 16 })
			var corpus []map[string]any
			for _, line := range jsonLines(t, "corpus.jsonl") {
				var c map[string]any
				if err := json.Unmarshal(line, &c); err != nil {
					t.Fatal(err)
				}
				corpus = append(corpus, c)
			}
			golden := jsonLines(t, "golden/"+name+".jsonl")
			var hdr struct {
				Prefix []uint32 `json:"special_prefix"`
			}
			if err := json.Unmarshal(golden[0], &hdr); err != nil {
				t.Fatal(err)
			}
			checked := 0
			for _, line := range golden[1:201] {
				var g struct {
					I   int      `json:"i"`
					IDs []uint32 `json:"ids"`
				}
				if err := json.Unmarshal(line, &g); err != nil {
					t.Fatal(err)
				}
				text, ok := corpus[g.I]["text"].(string)
				if !ok || text == "" {
					continue // invalid UTF-8 cannot travel in JSON; empty prompts are rejected
				}
				body, _ := json.Marshal(map[string]any{"prompt": text})
				resp, out := post(t, s.URL()+"/tokenize", string(body))
				var tr tokenizeResult
				if err := json.Unmarshal(out, &tr); err != nil || resp.StatusCode != 200 {
					t.Fatalf("tokenize %q: %d %s", text, resp.StatusCode, out)
				}
				if want := slices.Concat(hdr.Prefix, g.IDs); !slices.Equal(tr.Tokens, want) || tr.Count != len(want) {
					t.Fatalf("tokenize %q = %v, want %v", text, tr.Tokens, want)
				}
				checked++
			}
			for _, line := range jsonLines(t, "golden/chat-"+name+".jsonl")[1:31] {
				var g struct {
					Request json.RawMessage `json:"request"`
					IDs     []uint32        `json:"ids"`
					Error   string          `json:"error"`
				}
				if err := json.Unmarshal(line, &g); err != nil {
					t.Fatal(err)
				}
				resp, out := post(t, s.URL()+"/tokenize", string(g.Request))
				if g.Error != "" {
					if resp.StatusCode != 400 {
						t.Fatalf("tokenize %s: %d, want 400", g.Request, resp.StatusCode)
					}
					continue
				}
				var tr tokenizeResult
				if err := json.Unmarshal(out, &tr); err != nil || resp.StatusCode != 200 {
					t.Fatalf("tokenize %s: %d %s", g.Request, resp.StatusCode, out)
				}
				if !slices.Equal(tr.Tokens, g.IDs) {
					t.Fatalf("tokenize messages %s:\n got  %v\n want %v", g.Request, tr.Tokens, g.IDs)
				}
				checked++
			}
			if checked < 100 {
				t.Fatalf("only %d cases checked", checked)
			}
			// A chat request prefills the same tokens.
			_, out := post(t, s.URL()+"/tokenize", `{"messages":[{"role":"user","content":"Hello!"}]}`)
			var tr tokenizeResult
			if err := json.Unmarshal(out, &tr); err != nil {
				t.Fatal(err)
			}
			_, chat := post(t, s.URL()+"/v1/chat/completions", `{"messages":[{"role":"user","content":"Hello!"}],"max_tokens":2}`)
			var cr struct {
				Usage struct {
					PromptTokens int `json:"prompt_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(chat, &cr); err != nil || cr.Usage.PromptTokens != tr.Count {
				t.Fatalf("chat prompt tokens %d, tokenize count %d (%s)", cr.Usage.PromptTokens, tr.Count, chat)
			}
		})
	}
}

func TestBadTokenizerDir(t *testing.T) {
	opts := sim.Options{Model: "m", TokenizerDir: t.TempDir()}
	if _, err := sim.New(t.Context(), opts); err == nil {
		t.Fatal("started without tokenizer files")
	}
}
