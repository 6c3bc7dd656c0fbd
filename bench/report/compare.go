package report

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"text/tabwriter"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// WriteCompare prints the metrics of several runs side by side, each after
// the first with its ratio to the first.
func WriteCompare(w io.Writer, runs []Named) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := []string{"metric"}
	for _, n := range runs {
		header = append(header, n.Name)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, m := range metrics {
		cells := []string{m.label}
		for i, n := range runs {
			cell := m.format(n.Result)
			if i > 0 {
				q, _, _ := ratio(m.value(runs[0].Result), m.value(n.Result))
				cell += " (" + q + ")"
			}
			cells = append(cells, cell)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	return tw.Flush()
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
