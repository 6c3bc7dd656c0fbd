package hf

import (
	"encoding/json"
	"fmt"
)

// template is a post-processor reduced to what it does to one sequence
// with add_special_tokens: ids before it and ids after it. (Offsets, type ids
// and pairs, the other things post-processors do, do not change token ids.)
type template struct {
	prefix, suffix []uint32
}

func newPostProcessor(raw json.RawMessage) (template, error) {
	typ, err := componentType(raw)
	if err != nil || typ == "" {
		return template{}, err
	}
	switch typ {
	case "ByteLevel":
		return template{}, nil // trims offsets only
	case "TemplateProcessing":
		var c struct {
			Single []struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
				Sequence *struct {
					ID string `json:"id"`
				} `json:"Sequence"`
			} `json:"single"`
			SpecialTokens map[string]struct {
				IDs []uint32 `json:"ids"`
			} `json:"special_tokens"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return template{}, errIn("TemplateProcessing", err)
		}
		var t template
		seen := false
		for i, item := range c.Single {
			switch {
			case item.Sequence != nil && item.SpecialToken == nil:
				if item.Sequence.ID != "A" || seen {
					return template{}, fmt.Errorf("TemplateProcessing: single[%d]: want one sequence $A", i)
				}
				seen = true
			case item.SpecialToken != nil && item.Sequence == nil:
				st, ok := c.SpecialTokens[item.SpecialToken.ID]
				if !ok {
					return template{}, fmt.Errorf("TemplateProcessing: special token %q is not in special_tokens", item.SpecialToken.ID)
				}
				if seen {
					t.suffix = append(t.suffix, st.IDs...)
				} else {
					t.prefix = append(t.prefix, st.IDs...)
				}
			default:
				return template{}, fmt.Errorf("TemplateProcessing: single[%d]: want a SpecialToken or a Sequence", i)
			}
		}
		if !seen {
			return template{}, fmt.Errorf("TemplateProcessing: single has no sequence $A")
		}
		return t, nil
	case "Sequence":
		var c struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return template{}, errIn("Sequence", err)
		}
		var t template
		for i, p := range c.Processors {
			pt, err := newPostProcessor(p)
			if err != nil {
				return template{}, errIn(fmt.Sprintf("Sequence[%d]", i), err)
			}
			// Each processor wraps what the previous ones produced.
			t.prefix = append(append([]uint32{}, pt.prefix...), t.prefix...)
			t.suffix = append(t.suffix, pt.suffix...)
		}
		return t, nil
	}
	return template{}, unsupported(typ)
}

// apply wraps ids in the template.
func (t template) apply(ids []uint32) []uint32 {
	if len(t.prefix) == 0 && len(t.suffix) == 0 {
		return ids
	}
	out := make([]uint32, 0, len(t.prefix)+len(ids)+len(t.suffix))
	out = append(out, t.prefix...)
	out = append(out, ids...)
	return append(out, t.suffix...)
}
