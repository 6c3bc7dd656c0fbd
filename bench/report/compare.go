package report

import (
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// WriteCompare prints the metrics of several runs side by side, each after
// the first with its ratio to the first: names left-aligned, numbers
// right-aligned. only, if given, picks metrics by label (as printed, e.g.
// "P99 TTFT (ms)", "Cached-token fraction"), in that order.
func WriteCompare(w io.Writer, runs []Named, only ...string) error {
	rows := [][]string{{"metric"}}
	for _, n := range runs {
		rows[0] = append(rows[0], n.Name)
	}
	ms, err := pick(only)
	if err != nil {
		return err
	}
	for _, m := range ms {
		cells := []string{m.label}
		for i, n := range runs {
			cell := m.format(n.Result)
			if i > 0 {
				q, _, _ := ratio(m.value(runs[0].Result), m.value(n.Result))
				cell += " (" + q + ")"
			}
			cells = append(cells, cell)
		}
		rows = append(rows, cells)
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i == 0 {
				b.WriteString(c + pad)
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		b.WriteByte('\n')
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// pick returns the metrics labelled only, or all of them.
func pick(only []string) ([]metric, error) {
	if len(only) == 0 {
		return metrics, nil
	}
	var out []metric
	for _, label := range only {
		i := slices.IndexFunc(metrics, func(m metric) bool { return m.label == label })
		if i < 0 {
			return nil, fmt.Errorf("no metric labelled %q", label)
		}
		out = append(out, metrics[i])
	}
	return out, nil
}

type compareCell struct {
	Value, Ratio string
	// Class is "better" or "worse" against the first run, or empty.
	Class string
}

type compareRow struct {
	Label string
	Cells []compareCell
}

type comparePage struct {
	Title string
	Names []string
	Rows  []compareRow
	Plots []template.HTML
}

// WriteCompareHTML writes the comparison as a self-contained page: the
// table with ratios, and the runs' CDFs and throughput overlaid.
func WriteCompareHTML(w io.Writer, runs []Named) error {
	page := comparePage{Title: "strata bench — comparison"}
	for _, n := range runs {
		page.Names = append(page.Names, n.Name)
	}
	for _, m := range metrics {
		r := compareRow{Label: m.label}
		base := m.value(runs[0].Result)
		for i, n := range runs {
			c := compareCell{Value: m.format(n.Result)}
			if i > 0 {
				var q float64
				var ok bool
				c.Ratio, q, ok = ratio(base, m.value(n.Result))
				if ok && m.better != 0 && q != 1 {
					if (q < 1) == (m.better < 0) {
						c.Class = "better"
					} else {
						c.Class = "worse"
					}
				}
			}
			r.Cells = append(r.Cells, c)
		}
		page.Rows = append(page.Rows, r)
	}
	page.Plots = []template.HTML{
		cdfPlot("ttft-cdf", "TTFT — CDF", "time to first token (ms)", runs, (*Result).GetTtftMs),
		cdfPlot("itl-cdf", "Inter-token latency — CDF", "inter-token latency (ms)", runs, (*Result).GetItlMs),
		cdfPlot("e2e-cdf", "End-to-end latency — CDF", "end-to-end latency (ms)", runs, (*Result).GetE2ELatencyMs),
		timePlot("throughput", "Output token throughput", "tokens/s", runs, func(s *stratav1.BenchSecond) float64 { return float64(s.GetOutputTokens()) }),
		timePlot("ttft-time", "TTFT p50 over time", "TTFT (ms)", runs, (*stratav1.BenchSecond).GetTtftP50Ms),
	}
	return compareTemplate.Execute(w, page)
}

var compareTemplate = template.Must(template.New("compare").Funcs(funcs).Parse(pageHead + `
<h1>{{.Title}}</h1>
<p class="meta">Ratios are to the first run, {{index .Names 0}}.</p>
<table class="grid"><tr><th>metric</th>{{range .Names}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><td>{{.Label}}</td>{{range .Cells}}<td>{{.Value}}{{if .Ratio}} <span class="{{.Class}}">({{.Ratio}})</span>{{end}}</td>{{end}}</tr>
{{end}}</table>
<section class="plots">
{{range .Plots}}<figure>{{.}}</figure>
{{end}}</section>
</body>
</html>
`))
