package report

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// series is one line of a plot.
type series struct {
	name   string
	xs, ys []float64
	// step draws a staircase (a CDF) instead of straight segments.
	step bool
}

// plot is a line chart rendered as inline SVG: no script, no external
// resource, so a report is one self-contained file.
type plot struct {
	id, title, xLabel, yLabel string
	logX                      bool
	// yFrom0 starts the y axis at 0.
	yFrom0 bool
	series []series
}

// Geometry in SVG pixels.
const (
	plotW, plotH                       = 640, 300
	marginL, marginR, marginT, marginB = 64, 16, 28, 44
	innerW, innerH                     = plotW - marginL - marginR, plotH - marginT - marginB
	legendRow                          = 14
	maxLegendRunes                     = 40
	fontSize                           = 11
	tickLen                            = 4
	// minLogValue is where a log axis starts: latencies of 0 are drawn there.
	minLogValue = 1e-3
)

const (
	gridColour, axisColour, textColour, emptyColour = "#e5e5e5", "#555", "#222", "#888"
	emptyMessage                                    = "no samples"
)

// palette has colours that stay distinct for colour-blind readers (Okabe–Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

// svg renders the plot. Every text in it is escaped, so the result is safe
// to embed as template.HTML.
func (p plot) svg() template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="plot" data-plot="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		esc(p.id), plotW, plotH, plotW, plotH, esc(p.title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(p.title))
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="13" font-weight="bold" fill="%s">%s</text>`, marginL, textColour, esc(p.title))

	xmin, xmax, ymin, ymax, ok := p.bounds()
	if !ok {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="%d" fill="%s" text-anchor="middle">%s</text></svg>`,
			plotW/2, plotH/2, fontSize+2, emptyColour, emptyMessage)
		return template.HTML(b.String()) // every text in it is escaped
	}
	xs := newScale(xmin, xmax, p.logX, marginL, marginL+innerW)
	ys := newScale(ymin, ymax, false, marginT+innerH, marginT)

	// Grid, ticks and labels.
	for _, t := range xs.ticks() {
		x := xs.at(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`, x, marginT, x, marginT+innerH, gridColour)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="%d" fill="%s" text-anchor="middle">%s</text>`,
			x, marginT+innerH+tickLen+fontSize, fontSize, textColour, formatTick(t))
	}
	for _, t := range ys.ticks() {
		y := ys.at(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`, marginL, y, marginL+innerW, y, gridColour)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="%d" fill="%s" text-anchor="end">%s</text>`,
			marginL-tickLen-2, y+fontSize/3, fontSize, textColour, formatTick(t))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s"/>`, marginL, marginT, innerW, innerH, axisColour)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="%d" fill="%s" text-anchor="middle">%s</text>`,
		marginL+innerW/2, plotH-6, fontSize, textColour, esc(p.xLabel))
	fmt.Fprintf(&b, `<text transform="translate(14 %d) rotate(-90)" font-size="%d" fill="%s" text-anchor="middle">%s</text>`,
		marginT+innerH/2, fontSize, textColour, esc(p.yLabel))

	// Lines, clipped to the plot area.
	fmt.Fprintf(&b, `<clipPath id="clip-%s"><rect x="%d" y="%d" width="%d" height="%d"/></clipPath><g clip-path="url(#clip-%s)">`,
		esc(p.id), marginL, marginT, innerW, innerH, esc(p.id))
	for i, s := range p.series {
		if len(s.xs) == 0 {
			continue
		}
		var pts strings.Builder
		for j := range s.xs {
			x, y := xs.at(s.xs[j]), ys.at(s.ys[j])
			if s.step && j > 0 {
				fmt.Fprintf(&pts, "%.1f,%.1f ", x, ys.at(s.ys[j-1]))
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
		}
		fmt.Fprintf(&b, `<polyline class="series" data-series="%s" fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`,
			esc(s.name), palette[i%len(palette)], strings.TrimSpace(pts.String()))
	}
	b.WriteString(`</g>`)

	// Legend, top left inside the plot area.
	if len(p.series) > 1 || (len(p.series) == 1 && p.series[0].name != "") {
		for i, s := range p.series {
			y := marginT + 12 + i*legendRow
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`,
				marginL+8, y-4, marginL+24, y-4, palette[i%len(palette)])
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="%d" fill="%s">%s</text>`,
				marginL+28, y, fontSize, textColour, esc(truncate(s.name, maxLegendRunes)))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text in it is escaped
}

// bounds is the data range, false when there is nothing to draw.
func (p plot) bounds() (xmin, xmax, ymin, ymax float64, ok bool) {
	xmin, ymin = math.Inf(1), math.Inf(1)
	xmax, ymax = math.Inf(-1), math.Inf(-1)
	for _, s := range p.series {
		for j := range s.xs {
			x, y := s.xs[j], s.ys[j]
			if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(x, 0) || math.IsInf(y, 0) {
				continue
			}
			if p.logX {
				x = math.Max(x, minLogValue)
			}
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
			ok = true
		}
	}
	if p.yFrom0 {
		ymin = math.Min(ymin, 0)
	}
	return xmin, xmax, ymin, ymax, ok
}

// scale maps data values to pixels, linearly or by log10.
type scale struct {
	lo, hi     float64 // data, after log10 for a log scale
	log        bool
	from, to   float64 // pixels
	tickValues []float64
}

func newScale(lo, hi float64, log bool, from, to float64) scale {
	s := scale{log: log, from: from, to: to}
	if log {
		lo, hi = math.Log10(lo), math.Log10(hi)
		lo, hi = math.Floor(lo), math.Ceil(hi)
		if hi == lo {
			hi = lo + 1
		}
		for e := lo; e <= hi; e++ {
			s.tickValues = append(s.tickValues, math.Pow(10, e))
		}
	} else {
		if hi == lo { // one value: centre it
			if d := math.Abs(lo) / 2; d > 0 {
				lo, hi = lo-d, hi+d
			} else {
				hi = 1
			}
		}
		step := niceStep((hi - lo) / 5)
		lo, hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
		for v := lo; v <= hi+step/2; v += step {
			s.tickValues = append(s.tickValues, math.Round(v/step)*step)
		}
	}
	s.lo, s.hi = lo, hi
	return s
}

func (s scale) at(v float64) float64 {
	if s.log {
		v = math.Log10(math.Max(v, minLogValue))
	}
	return s.from + (v-s.lo)/(s.hi-s.lo)*(s.to-s.from)
}

func (s scale) ticks() []float64 { return s.tickValues }

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func formatTick(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func esc(s string) string { return html.EscapeString(s) }

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
