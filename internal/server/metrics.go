package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyholder/keyholder/internal/store"
)

type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	swept    *prometheus.CounterVec
	// decided counts the records this process saw approved or rejected.
	decided *prometheus.CounterVec
	// pushDropped counts pushes dropped because the queue was full.
	pushDropped prometheus.Counter
}

// pendingCollector reports the pending records at scrape time. It counts
// them on their expiry index, so a scrape costs what is pending, not what
// was ever stored (issue 11); the decided ones are counters.
type pendingCollector struct {
	st   *store.Store
	desc *prometheus.Desc
}

func (r *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := r.st.PendingRecords(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, float64(n), store.StatePending)
}

func newMetrics(reg *prometheus.Registry, st *store.Store) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyholder_http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keyholder_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"method", "route"}),
		swept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyholder_swept_total", Help: "Expired pending records and requests removed by the sweeper.",
		}, []string{"kind"}),
		decided: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyholder_records_decided_total", Help: "Records approved or rejected through this process.",
		}, []string{"state"}),
		pushDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyholder_push_dropped_total", Help: "Pushes dropped because the push queue was full.",
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.swept, m.decided, m.pushDropped, &pendingCollector{st: st,
		desc: prometheus.NewDesc("keyholder_records", "Records waiting for approval (state pending).", []string{"state"}, nil)})
	tc := st.TokenCache()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keyholder_token_cache_on",
			Help: "1 while the token cache is on (it hears every revocation), else 0."},
			func() float64 {
				if tc.Stats().On {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyholder_token_cache_hits_total",
			Help: "Bearer tokens checked from the token cache."},
			func() float64 { return float64(tc.Stats().Hits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyholder_token_cache_misses_total",
			Help: "Bearer tokens read from the database while the token cache was on."},
			func() float64 { return float64(tc.Stats().Misses) }))
	return m
}

func (m *metrics) observe(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(method, route).Observe(d.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
