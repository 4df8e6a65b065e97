package gateway

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"
)

// Save latency is the time from an upload's open to its commit (the clean
// close that renames it into place): what a developer waits for between
// pressing save and the file being there. SaveLatency keeps it per user and
// protocol over a sliding window, in memory bounded by the number of
// user/protocol pairs that saved within the window.
//
// Each pair holds a ring of LatencyWindow/LatencySlot time slots, and each
// slot a histogram with logarithmic buckets (each 25% wider than the one
// before, from 0.1 ms to about 12 min, longer ones in the last), its count,
// minimum and maximum. A percentile is read from the buckets of the slots
// in the window: within 12% of the true value, and exact when it is the
// smallest or the largest save (p99 of fewer than 100 saves), or when every
// save took the same time.

const (
	// LatencyWindow is how far back save latency summaries look.
	LatencyWindow = 5 * time.Minute
	// LatencySlot is the width of one point of a summary's series: the
	// window moves by this much.
	LatencySlot = 30 * time.Second

	latencySlots   = int(LatencyWindow / LatencySlot)
	latencyBuckets = 72
	latencyBase    = 100 * time.Microsecond
	latencyGrowth  = 1.25
)

// LatencySummary is the save latency of one user over one protocol in the
// last LatencyWindow. Durations are in nanoseconds in JSON.
type LatencySummary struct {
	User     string        `json:"user"`
	Protocol string        `json:"protocol"`
	Count    int           `json:"count"` // saves in the window
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	Max      time.Duration `json:"max"`
	// Series has one point per LatencySlot of the window, oldest first;
	// a point without saves has Count 0.
	Series []LatencyPoint `json:"series"`
}

// LatencyPoint is the save latency of one LatencySlot.
type LatencyPoint struct {
	Start time.Time     `json:"start"`
	Count int           `json:"count"`
	P50   time.Duration `json:"p50"`
	P99   time.Duration `json:"p99"`
}

// SaveLatency records save durations per user and protocol and summarizes
// the last LatencyWindow of them. The zero value is not usable: use
// NewSaveLatency. It is safe for concurrent use.
type SaveLatency struct {
	now func() time.Time

	// mu guards the fields below.
	mu        sync.Mutex
	pairs     map[latencyKey]*latencyRing
	lastPrune int64 // slot number of the last prune
}

type latencyKey struct{ user, proto string }

// latencyRing is one pair's slots; slot n lives at index n % latencySlots.
type latencyRing [latencySlots]latencySlotData

type latencySlotData struct {
	num      int64 // slot number: unix nanos / LatencySlot; 0 when unused
	n        uint32
	min, max time.Duration
	buckets  [latencyBuckets]uint32
}

// NewSaveLatency returns an empty SaveLatency. now is its clock; nil means
// time.Now.
func NewSaveLatency(now func() time.Time) *SaveLatency {
	if now == nil {
		now = time.Now
	}
	return &SaveLatency{now: now, pairs: make(map[latencyKey]*latencyRing)}
}

func slotNum(t time.Time) int64 { return t.UnixNano() / int64(LatencySlot) }

// bucketOf returns the bucket of d: 0 for up to latencyBase, then i for
// (base·g^(i-1), base·g^i], the last bucket taking everything longer.
func bucketOf(d time.Duration) int {
	if d <= latencyBase {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(latencyBase)) / math.Log(latencyGrowth)))
	return min(max(i, 1), latencyBuckets-1)
}

// bucketValue is the value a percentile falling in bucket i reports: the
// geometric middle of its bounds.
func bucketValue(i int) time.Duration {
	if i == 0 {
		return latencyBase
	}
	return time.Duration(float64(latencyBase) * math.Pow(latencyGrowth, float64(i)-0.5))
}

// Observe records one save of user over proto that took d.
func (l *SaveLatency) Observe(user, proto string, d time.Duration) {
	d = max(d, 0)
	cur := slotNum(l.now())
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur != l.lastPrune {
		l.pruneLocked(cur)
	}
	k := latencyKey{user, proto}
	r := l.pairs[k]
	if r == nil {
		r = new(latencyRing)
		l.pairs[k] = r
	}
	s := &r[cur%int64(latencySlots)]
	if s.num != cur {
		*s = latencySlotData{num: cur}
	}
	if s.n == 0 || d < s.min {
		s.min = d
	}
	if d > s.max {
		s.max = d
	}
	if s.n < math.MaxUint32 {
		s.n++
		s.buckets[bucketOf(d)]++
	}
}

// inWindow reports whether a slot numbered num is in the window ending
// with slot cur.
func inWindow(num, cur int64) bool { return num > cur-int64(latencySlots) && num <= cur }

// pruneLocked forgets the pairs without a save in the window.
func (l *SaveLatency) pruneLocked(cur int64) {
	l.lastPrune = cur
	for k, r := range l.pairs {
		live := false
		for i := range r {
			if r[i].n > 0 && inWindow(r[i].num, cur) {
				live = true
				break
			}
		}
		if !live {
			delete(l.pairs, k)
		}
	}
}

// Len returns the number of user/protocol pairs held.
func (l *SaveLatency) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pairs)
}

// Summaries returns the summary of every user and protocol with a save in
// the window, by user then protocol.
func (l *SaveLatency) Summaries() []LatencySummary {
	cur := slotNum(l.now())
	l.mu.Lock()
	l.pruneLocked(cur)
	out := make([]LatencySummary, 0, len(l.pairs))
	for k, r := range l.pairs {
		out = append(out, r.summary(k, cur))
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b LatencySummary) int {
		return cmp.Or(cmp.Compare(a.User, b.User), cmp.Compare(a.Protocol, b.Protocol))
	})
	return out
}

func (r *latencyRing) summary(k latencyKey, cur int64) LatencySummary {
	sum := LatencySummary{User: k.user, Protocol: k.proto, Series: make([]LatencyPoint, 0, latencySlots)}
	var all latencySlotData
	for num := cur - int64(latencySlots) + 1; num <= cur; num++ {
		p := LatencyPoint{Start: time.Unix(0, num*int64(LatencySlot))}
		if s := &r[num%int64(latencySlots)]; s.num == num && s.n > 0 {
			p.Count = int(s.n)
			p.P50, p.P99 = s.quantile(0.5), s.quantile(0.99)
			all.merge(s)
		}
		sum.Series = append(sum.Series, p)
	}
	sum.Count, sum.Max = int(all.n), all.max
	if all.n > 0 {
		sum.P50, sum.P99 = all.quantile(0.5), all.quantile(0.99)
	}
	return sum
}

func (s *latencySlotData) merge(o *latencySlotData) {
	if s.n == 0 || o.min < s.min {
		s.min = o.min
	}
	s.max = max(s.max, o.max)
	s.n += o.n
	for i, c := range o.buckets {
		s.buckets[i] += c
	}
}

// quantile estimates the q-quantile (0 < q ≤ 1) of the slot's saves, by
// nearest rank: exact when it is the smallest or the largest (p99 of fewer
// than 100 saves is their maximum).
func (s *latencySlotData) quantile(q float64) time.Duration {
	rank := uint32(math.Ceil(q * float64(s.n)))
	switch {
	case rank >= s.n:
		return s.max
	case rank <= 1:
		return s.min
	}
	var seen uint32
	for i, c := range s.buckets {
		if seen += c; seen >= rank && c > 0 {
			return min(max(bucketValue(i), s.min), s.max)
		}
	}
	return s.max
}

// SaveLatency returns the gateway's save latency record.
func (g *Gateway) SaveLatency() *SaveLatency { return g.latency }
