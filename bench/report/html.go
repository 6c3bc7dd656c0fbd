package report

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"strings"

	stratav1 "github.com/strata-llm/strata/proto/strata/v1"
)

// Named is a result with the name it is shown under (its file name).
type Named struct {
	Name   string
	Result *Result
}

// WriteHTML writes the report of one run.
func WriteHTML(w io.Writer, name string, r *Result) error {
	return reportTemplate.Execute(w, reportPage{
		Title: "strata bench — " + name, Name: name, R: r,
		Summary:   summaryRows(r),
		Plots:     runPlots(r),
		Workers:   r.GetWorkers(),
		Errors:    errorRows(r),
		Command:   strings.Join(r.GetCommandLine(), " "),
		Config:    configRows(r.GetConfig()),
		StartedAt: r.GetStartedAt().AsTime().Format("2006-01-02 15:04:05 MST"),
	})
}

type row struct{ Label, Value string }

type reportPage struct {
	Title, Name string
	R           *Result
	Summary     []group
	Plots       []template.HTML
	Workers     []*stratav1.BenchWorker
	Errors      []errorRow
	Command     string
	Config      []row
	StartedAt   string
}

type group struct {
	Name string
	Rows []row
}

type errorRow struct {
	Kind    string
	Count   uint64
	Example string
}

func summaryRows(r *Result) []group {
	var gs []group
	for _, m := range metrics {
		if len(gs) == 0 || gs[len(gs)-1].Name != m.group {
			gs = append(gs, group{Name: m.group})
		}
		g := &gs[len(gs)-1]
		g.Rows = append(g.Rows, row{m.label, m.format(r)})
	}
	return gs
}

func errorRows(r *Result) []errorRow {
	var out []errorRow
	for _, kind := range sortedKeys(r.GetErrors()) {
		out = append(out, errorRow{kind, r.GetErrors()[kind], truncate(r.GetErrorExamples()[kind], 300)})
	}
	return out
}

func configRows(c *stratav1.BenchConfig) []row {
	if c == nil {
		return nil
	}
	rows := []row{
		{"URL", c.GetUrl()}, {"Endpoint", c.GetEndpoint()}, {"Model", c.GetModel()}, {"Workload", c.GetWorkload()},
	}
	switch p := c.GetWorkloadParams().(type) {
	case *stratav1.BenchConfig_Synthetic:
		s := p.Synthetic
		rows = append(rows, row{"Lengths", fmt.Sprintf("input %d, output %d", s.GetInputLen(), s.GetOutputLen()) + ", range ratio " + formatNumber(s.GetRangeRatio(), 2)})
	case *stratav1.BenchConfig_Prefix:
		s := p.Prefix
		rows = append(rows, row{"Prefixes", fmt.Sprintf("%d prefixes of %d tokens, suffix %d, output %d", s.GetNumPrefixes(), s.GetPrefixLen(), s.GetSuffixLen(), s.GetOutputLen())})
	case *stratav1.BenchConfig_Chat:
		s := p.Chat
		rows = append(rows, row{"Sessions", fmt.Sprintf("%d users × %d rounds, system %d, user %d, output %d", s.GetUsers(), s.GetRounds(), s.GetSystemLen(), s.GetUserLen(), s.GetOutputLen())})
	case *stratav1.BenchConfig_Trace:
		s := p.Trace
		rows = append(rows, row{"Trace", s.GetFile() + " (" + s.GetFormat() + ")"})
	}
	a := c.GetArrival()
	arr := a.GetProcess()
	switch arr {
	case "trace":
		arr += ", speed " + formatNumber(a.GetSpeed(), 2) + "×"
	case "poisson", "gamma":
		arr += ", " + formatNumber(a.GetRequestRate(), 2) + " req/s, burstiness " + formatNumber(a.GetBurstiness(), 2)
	}
	rows = append(rows, row{"Arrivals", arr},
		row{"Seed", fmt.Sprintf("%d", c.GetSeed())},
		row{"Max concurrency", fmt.Sprintf("%d", c.GetMaxConcurrency())},
		row{"Prompts", c.GetPromptFormat() + ", tokenizer " + c.GetTokenizer()},
	)
	for _, name := range sortedKeys(c.GetHeaders()) {
		rows = append(rows, row{"Header " + name, c.GetHeaders()[name]})
	}
	return rows
}

// runPlots are the report's figures, in order.
func runPlots(r *Result) []template.HTML {
	one := []Named{{Name: "", Result: r}}
	plots := []template.HTML{
		cdfPlot("ttft-cdf", "TTFT — CDF", "time to first token (ms)", one, (*Result).GetTtftMs),
		cdfPlot("itl-cdf", "Inter-token latency — CDF", "inter-token latency (ms)", one, (*Result).GetItlMs),
		cdfPlot("e2e-cdf", "End-to-end latency — CDF", "end-to-end latency (ms)", one, (*Result).GetE2ELatencyMs),
		timePlot("throughput", "Output token throughput", "tokens/s", one, func(s *stratav1.BenchSecond) float64 { return float64(s.GetOutputTokens()) }),
		requestsPlot(r),
		ttftTimePlot(r),
	}
	if len(r.GetWorkers()) > 0 {
		plots = append(plots, workerPlot(r))
	}
	return plots
}

func cdfPlot(id, title, xLabel string, runs []Named, get func(*Result) *stratav1.BenchDistribution) template.HTML {
	p := plot{id: id, title: title, xLabel: xLabel, yLabel: "fraction of samples", logX: wideRange(runs, get)}
	for _, n := range runs {
		s := series{name: n.Name, step: true}
		for _, q := range get(n.Result).GetCdf() {
			s.xs = append(s.xs, q.GetValue())
			s.ys = append(s.ys, q.GetQ())
		}
		p.series = append(p.series, s)
	}
	return p.svg()
}

// wideRange reports whether a distribution's tail reaches thirty times its
// median, where a linear axis squeezes the body of the CDF into a line.
func wideRange(runs []Named, get func(*Result) *stratav1.BenchDistribution) bool {
	lo, hi := math.Inf(1), 0.0
	for _, n := range runs {
		d := get(n.Result)
		if d.GetP50() > 0 {
			lo = min(lo, d.GetP50())
		}
		hi = max(hi, d.GetMax())
	}
	return hi/lo > 30
}

func timePlot(id, title, yLabel string, runs []Named, get func(*stratav1.BenchSecond) float64) template.HTML {
	p := plot{id: id, title: title, xLabel: "time (s)", yLabel: yLabel, yFrom0: true}
	for _, n := range runs {
		s := series{name: n.Name}
		for _, sec := range n.Result.GetTimeSeries() {
			s.xs = append(s.xs, float64(sec.GetSecond()))
			s.ys = append(s.ys, get(sec))
		}
		p.series = append(p.series, s)
	}
	return p.svg()
}

func requestsPlot(r *Result) template.HTML {
	p := plot{id: "requests", title: "Requests per second and in flight", xLabel: "time (s)", yLabel: "requests", yFrom0: true}
	sent, done, inFlight := series{name: "sent/s"}, series{name: "completed/s"}, series{name: "in flight"}
	for _, s := range r.GetTimeSeries() {
		x := float64(s.GetSecond())
		sent.xs, sent.ys = append(sent.xs, x), append(sent.ys, float64(s.GetRequestsSent()))
		done.xs, done.ys = append(done.xs, x), append(done.ys, float64(s.GetRequestsSucceeded()+s.GetRequestsFailed()))
		inFlight.xs, inFlight.ys = append(inFlight.xs, x), append(inFlight.ys, float64(s.GetInFlight()))
	}
	p.series = []series{sent, done, inFlight}
	return p.svg()
}

func ttftTimePlot(r *Result) template.HTML {
	p := plot{id: "ttft-time", title: "TTFT over time", xLabel: "time (s)", yLabel: "TTFT (ms)", yFrom0: true}
	p50, p99 := series{name: "p50"}, series{name: "p99"}
	for _, s := range r.GetTimeSeries() {
		if s.GetTtftP50Ms() == 0 && s.GetTtftP99Ms() == 0 {
			continue // no first token in this second
		}
		x := float64(s.GetSecond())
		p50.xs, p50.ys = append(p50.xs, x), append(p50.ys, s.GetTtftP50Ms())
		p99.xs, p99.ys = append(p99.xs, x), append(p99.ys, s.GetTtftP99Ms())
	}
	p.series = []series{p50, p99}
	return p.svg()
}

func workerPlot(r *Result) template.HTML {
	p := plot{id: "workers", title: "Requests per second by worker", xLabel: "time (s)", yLabel: "requests/s", yFrom0: true}
	for _, w := range r.GetWorkers() {
		s := series{name: w.GetWorker()}
		for i, n := range w.GetRequestsPerSecond() {
			s.xs, s.ys = append(s.xs, float64(i)), append(s.ys, float64(n))
		}
		p.series = append(p.series, s)
	}
	return p.svg()
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.SortedFunc(maps.Keys(m), cmp.Compare[string])
}

var funcs = template.FuncMap{
	"num": formatNumber,
	"pct": func(v float64) string { return formatNumber(100*v, 1) + " %" },
}

var reportTemplate = template.Must(template.New("report").Funcs(funcs).Parse(pageHead + `
<h1>{{.Title}}</h1>
<p class="meta">Started {{.StartedAt}} · strata {{.R.GetStrataVersion}} · {{num .R.GetWallSeconds 1}} s wall time</p>
<p class="cmd"><code>{{.Command}}</code></p>
<section class="tables">
{{range .Summary}}<table class="summary"><caption>{{.Name}}</caption>
{{range .Rows}}<tr><th>{{.Label}}</th><td>{{.Value}}</td></tr>
{{end}}</table>
{{end}}
<table class="summary"><caption>Configuration</caption>
{{range .Config}}<tr><th>{{.Label}}</th><td>{{.Value}}</td></tr>
{{end}}</table>
</section>
<section class="plots">
{{range .Plots}}<figure>{{.}}</figure>
{{end}}</section>
{{if .Workers}}<h2>Workers</h2>
<table class="grid"><tr><th>worker</th><th>requests</th><th>failed</th><th>prompt tokens</th><th>cached</th><th>output tokens</th><th>TTFT p50 (ms)</th><th>TTFT p99 (ms)</th></tr>
{{range .Workers}}<tr><td>{{.GetWorker}}</td><td>{{.GetRequests}}</td><td>{{.GetFailed}}</td><td>{{.GetPromptTokens}}</td><td>{{pct .GetCachedTokenFraction}}</td><td>{{.GetOutputTokens}}</td><td>{{num .GetTtftP50Ms 2}}</td><td>{{num .GetTtftP99Ms 2}}</td></tr>
{{end}}</table>{{end}}
{{if .Errors}}<h2>Errors</h2>
<table class="grid"><tr><th>kind</th><th>count</th><th>first message</th></tr>
{{range .Errors}}<tr><td>{{.Kind}}</td><td>{{.Count}}</td><td>{{.Example}}</td></tr>
{{end}}</table>{{end}}
</body>
</html>
`))

// pageHead is shared by the run and compare pages: styles inline, nothing
// loaded from anywhere.
const pageHead = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin-top: 28px; }
.meta { color: #666; margin: 0 0 8px; }
.cmd code { background: #f4f4f4; padding: 4px 6px; display: inline-block; word-break: break-all; }
.tables { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
.summary th { text-align: left; font-weight: normal; padding: 2px 12px 2px 0; color: #444; }
.summary td { text-align: right; font-variant-numeric: tabular-nums; padding: 2px 0; }
.grid th, .grid td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; font-variant-numeric: tabular-nums; }
.grid th:first-child, .grid td:first-child { text-align: left; }
.better { color: #087f23; } .worse { color: #b00020; }
.plots { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 16px; }
figure { margin: 0; border: 1px solid #eee; }
svg { display: block; max-width: 100%; height: auto; font-family: inherit; }
</style>
</head>
<body>`
