package main

import (
	"math"
	"sort"
)

// percentile returns the p-th percentile (0 ≤ p ≤ 100) of xs by linear
// interpolation between closest ranks (the common "type 7" definition, the
// one numpy and R use by default). It returns NaN for no samples. xs is not
// modified.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 || math.IsNaN(p) {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	p = math.Max(0, math.Min(100, p))
	pos := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// median is the 50th percentile: with an even count, the mean of the two
// middle samples.
func median(xs []float64) float64 { return percentile(xs, 50) }

// summary is the spread of a set of samples as quoted in the tables.
type summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P10    float64 `json:"p10"`
	P90    float64 `json:"p90"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	return summary{
		N:      len(xs),
		Median: median(xs),
		P10:    percentile(xs, 10),
		P90:    percentile(xs, 90),
		Min:    percentile(xs, 0),
		Max:    percentile(xs, 100),
	}
}
