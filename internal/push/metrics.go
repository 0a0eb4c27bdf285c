package push

import "github.com/prometheus/client_golang/prometheus"

// Result labels of keyholder_push_total.
const (
	resultOK      = "ok"      // handed on (local hub / NOTIFY / FCM accepted)
	resultGone    = "gone"    // FCM token unregistered
	resultError   = "error"   // any other failure
	resultSkipped = "skipped" // FCM target but no FCM notifier configured
)

// Metrics holds the package's Prometheus collectors. Create one with
// NewMetrics, pass it to the constructors, and register it once on the
// server's registry (reg.MustRegister(m)). A nil *Metrics records nothing,
// so tests need no registry.
type Metrics struct {
	sends      *prometheus.CounterVec
	overflows  prometheus.Counter
	reconnects prometheus.Counter
}

// NewMetrics creates unregistered collectors:
//
//	keyholder_push_total{kind="local|fcm",result="ok|gone|error|skipped"}
//	keyholder_push_local_overflow_total    slow SSE subscribers disconnected
//	keyholder_push_pg_reconnects_total     LISTEN connection re-established
func NewMetrics() *Metrics {
	m := &Metrics{
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyholder_push_total",
			Help: "Push notifications by target kind and result.",
		}, []string{"kind", "result"}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyholder_push_local_overflow_total",
			Help: "Local subscribers disconnected because their event buffer was full.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyholder_push_pg_reconnects_total",
			Help: "Times the PostgreSQL LISTEN connection was re-established after a loss.",
		}),
	}
	// Pre-create the series so dashboards see zeros instead of gaps.
	for _, k := range []string{KindLocal, KindFCM} {
		for _, r := range []string{resultOK, resultGone, resultError, resultSkipped} {
			m.sends.WithLabelValues(k, r)
		}
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.sends.Describe(ch)
	m.overflows.Describe(ch)
	m.reconnects.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.sends.Collect(ch)
	m.overflows.Collect(ch)
	m.reconnects.Collect(ch)
}

func (m *Metrics) send(kind, result string) {
	if m != nil {
		m.sends.WithLabelValues(kind, result).Inc()
	}
}

func (m *Metrics) overflow() {
	if m != nil {
		m.overflows.Inc()
	}
}

func (m *Metrics) reconnect() {
	if m != nil {
		m.reconnects.Inc()
	}
}
