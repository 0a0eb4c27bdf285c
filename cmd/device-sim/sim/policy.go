package sim

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Decisions.
const (
	askUser = "ask"
	approve = "approve"
	reject  = "reject"
	grant   = "grant"
	refuse  = "refuse"
)

// Rule is what the device does with one party's requests.
type Rule struct {
	// Submissions: approve, reject or ask.
	Submissions string `json:"submissions,omitempty"`
	// Reads (access requests): grant, refuse or ask.
	Reads string `json:"reads,omitempty"`
	// ReadMinutes caps the lifetime of an automatic grant (0: as asked).
	ReadMinutes int `json:"read_minutes,omitempty"`
}

// Policy maps parties (by name or key fingerprint) to rules.
//
//	{
//	  "default": {"submissions": "ask", "reads": "ask"},
//	  "parties": {
//	    "Acme Lab": {"submissions": "approve", "reads": "grant", "read_minutes": 60},
//	    "0123…CDEF": {"submissions": "reject", "reads": "refuse"}
//	  }
//	}
type Policy struct {
	Default Rule            `json:"default"`
	Parties map[string]Rule `json:"parties"`
}

func loadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p Policy
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("policy %s: %v", path, err)
	}
	for name, r := range p.Parties {
		if err := r.valid(); err != nil {
			return nil, fmt.Errorf("policy %s, party %q: %v", path, name, err)
		}
	}
	if err := p.Default.valid(); err != nil {
		return nil, fmt.Errorf("policy %s, default: %v", path, err)
	}
	return &p, nil
}

func (r Rule) valid() error {
	switch r.Submissions {
	case "", askUser, approve, reject:
	default:
		return fmt.Errorf("submissions must be approve, reject or ask, not %q", r.Submissions)
	}
	switch r.Reads {
	case "", askUser, grant, refuse:
	default:
		return fmt.Errorf("reads must be grant, refuse or ask, not %q", r.Reads)
	}
	if r.ReadMinutes < 0 {
		return fmt.Errorf("read_minutes must not be negative")
	}
	return nil
}

// rule returns the rule of the party with this name and fingerprint.
func (p *Policy) rule(name, fpr string) Rule {
	r, ok := p.Parties[fpr]
	if !ok {
		r, ok = p.Parties[name]
	}
	if !ok {
		r = p.Default
	}
	if r.Submissions == "" {
		r.Submissions = p.Default.Submissions
	}
	if r.Reads == "" {
		r.Reads = p.Default.Reads
	}
	if r.Submissions == "" {
		r.Submissions = askUser
	}
	if r.Reads == "" {
		r.Reads = askUser
	}
	return r
}

// grantExpiry is when an automatic grant under r ends (zero: as asked).
func (r Rule) grantExpiry() time.Time {
	if r.ReadMinutes == 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(r.ReadMinutes) * time.Minute)
}
