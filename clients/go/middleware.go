package keyleash

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"
)

// KeySpec is one key the middleware issues per request. Name (how handlers read it back with
// FromContextFor) defaults to Vendor.
type KeySpec struct {
	Name string
	IssueParams
}

// MiddlewareOptions configures Client.Middleware.
type MiddlewareOptions struct {
	// Keys to issue for every request: one per vendor (or several per vendor under different Names).
	Keys []KeySpec
	// Label for the keys; default "<METHOD> <path>".
	Label func(*http.Request) string
	// Budgets the request's keys are attached to, e.g. the user's budget
	// (func(r) []string { return []string{"user:" + userID(r)} }). A KeySpec's own Budgets win.
	Budgets func(*http.Request) []string
	// FailOpen runs the handler without a key (and logs) when issuing fails or times out;
	// the default (false) answers 503 {"code":"vault_key_unavailable"} and skips the handler.
	FailOpen bool
	// IssueTimeout bounds issuing; default 2 s.
	IssueTimeout time.Duration
	// Skip says which requests get no key; default: DefaultSkipPaths.
	Skip func(*http.Request) bool
	// Logger for warnings; default log.Default().
	Logger *log.Logger
	// Minter, when set, mints the request's keys locally instead of issuing them: no control-API
	// call at the start of a request, so neither its latency nor its availability matters (the
	// gateway checks a minted key on its first call). Each KeySpec becomes MintParams; its
	// ExpiresIn ("30s", "5m", "1h", "1d"; "" = DefaultMintTTL) is the key's lifetime. A RateLimit,
	// or a Mode other than the minter's, cannot be minted: Middleware panics when it is built.
	Minter *Minter
	// RevokeMinted revokes minted keys when the handler returns, as issued keys are (one
	// control-API call per key: the Client needs APIURL and AdminToken). By default minted keys
	// are left to expire, so a request makes no control-API call at all.
	RevokeMinted bool
}

// DefaultSkipPaths never get a key (exact, or any sub-path): health probes and metrics.
var DefaultSkipPaths = []string{"/health", "/healthz", "/readyz", "/livez", "/ping", "/metrics", "/favicon.ico"}

// UnavailableCode is the code of the middleware's fail-closed 503.
const UnavailableCode = "vault_key_unavailable"

func defaultSkip(r *http.Request) bool {
	for _, p := range DefaultSkipPaths {
		if r.URL.Path == p || strings.HasPrefix(r.URL.Path, p+"/") {
			return true
		}
	}
	return false
}

// Middleware returns HTTP middleware that issues the request's vault key(s), runs the handler
// with them in r.Context() (FromContext / FromContextFor / Transport), and revokes them when the
// handler returns — also when it panics. With MiddlewareOptions.Minter the keys are minted
// locally instead (see there).
//
//	http.ListenAndServe(addr, client.Middleware(opts)(mux))
func (c *Client) Middleware(opts MiddlewareOptions) func(http.Handler) http.Handler {
	timeout := opts.IssueTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	skip := opts.Skip
	if skip == nil {
		skip = defaultSkip
	}
	logger := opts.Logger
	if logger == nil {
		logger = log.Default()
	}
	var mintSpecs []MintParams
	if opts.Minter != nil {
		mintSpecs = make([]MintParams, len(opts.Keys))
		for i, s := range opts.Keys {
			p, err := s.mintParams(opts.Minter)
			if err != nil {
				panic(fmt.Sprintf("keyleash: MiddlewareOptions.Keys[%d]: %v", i, err))
			}
			mintSpecs[i] = p
		}
	}
	revoke := opts.Minter == nil || opts.RevokeMinted
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if skip(r) {
				next.ServeHTTP(w, r)
				return
			}
			label := clipLabel(r.Method + " " + r.URL.Path)
			if opts.Label != nil {
				label = opts.Label(r)
			}
			var budgets []string
			if opts.Budgets != nil {
				budgets = opts.Budgets(r)
			}
			var keys []*VaultKey
			var err error
			if opts.Minter != nil {
				keys, err = mintAll(opts.Minter, mintSpecs, label, budgets)
			} else {
				keys, err = c.issueAll(r.Context(), opts.Keys, label, budgets, timeout)
			}
			if err != nil {
				if opts.FailOpen {
					logger.Printf("keyleash: could not issue a vault key (%v); FailOpen is on, so %s %s runs without one", err, r.Method, r.URL.Path)
					next.ServeHTTP(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				// keyleash's code as the reason; never a host, port or Go error text.
				reason := Code(err)
				if reason == "" {
					reason = "internal_error"
				}
				_ = json.NewEncoder(w).Encode(map[string]string{"code": UnavailableCode, "message": "could not issue a vault key for this request; try again shortly", "reason": reason})
				return
			}
			ctx := r.Context()
			for i, k := range keys {
				ctx = WithVaultKey(ctx, opts.Keys[i].name(), k)
			}
			if revoke {
				defer c.revokeQuietly(keys, logger)
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func (s KeySpec) name() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Vendor
}

// mintParams turns a spec written for issuing into one for minting.
func (s KeySpec) mintParams(m *Minter) (MintParams, error) {
	if s.RateLimit != nil {
		return MintParams{}, errors.New("a minted key has no rate limit of its own (give its budget one)")
	}
	if s.Mode != "" && s.Mode != m.Mode() {
		return MintParams{}, fmt.Errorf("mode %q, but the minting key mints %s keys", s.Mode, m.Mode())
	}
	p := MintParams{
		Vendor:           s.Vendor,
		AllowedEndpoints: s.AllowedEndpoints,
		DailyUSDCap:      s.DailyUSDCap,
		Label:            s.Label,
		Metadata:         s.Metadata,
		Budgets:          s.Budgets,
	}
	if s.ExpiresIn != "" {
		ttl, err := parseTTL(s.ExpiresIn)
		if err != nil {
			return MintParams{}, err
		}
		p.ExpiresIn = ttl
	}
	return p, nil
}

// mintAll mints every spec's key. Nothing to undo on a failure: no key has left the process.
func mintAll(m *Minter, specs []MintParams, label string, budgets []string) ([]*VaultKey, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("keyleash: MiddlewareOptions.Keys is empty")
	}
	keys := make([]*VaultKey, len(specs))
	for i, p := range specs {
		if p.Label == "" {
			p.Label = label
		}
		if p.Budgets == nil && budgets != nil {
			p.Budgets = append([]string(nil), budgets...)
		}
		k, err := m.Mint(p)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	return keys, nil
}

// clipLabel cuts the default label ("<METHOD> <path>") to the 200 characters a key's label may
// have, so a long URL cannot make minting or issuing fail; the control characters a decoded path
// may hold become U+FFFD, which no label may hold either.
func clipLabel(s string) string {
	s = controlCharRE.ReplaceAllLiteralString(s, "\uFFFD")
	n := 0
	for i, r := range s {
		w := 1
		if r > 0xFFFF {
			w = 2
		}
		if n+w > 200 {
			return s[:i]
		}
		n += w
	}
	return s
}

type issued struct {
	i   int
	key *VaultKey
	err error
}

// issueAll issues every spec in parallel, waiting at most timeout. All or nothing: on a failure
// or the deadline, every key that was — or later gets — issued is revoked, so none leaks.
func (c *Client) issueAll(reqCtx context.Context, specs []KeySpec, label string, budgets []string, timeout time.Duration) ([]*VaultKey, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("keyleash: MiddlewareOptions.Keys is empty")
	}
	// Not tied to the request or the deadline: a key issued late is still seen, then revoked.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
	results := make(chan issued, len(specs))
	for i, s := range specs {
		p := s.IssueParams
		if p.Label == "" {
			p.Label = label
		}
		if p.Budgets == nil && budgets != nil {
			p.Budgets = append([]string(nil), budgets...)
		}
		go func(i int, p IssueParams) {
			k, err := c.IssueKey(ctx, p)
			results <- issued{i, k, err}
		}(i, p)
	}
	keys := make([]*VaultKey, len(specs))
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var failure error
	got := 0
	for got < len(specs) && failure == nil {
		select {
		case res := <-results:
			got++
			if res.err != nil {
				failure = res.err
			} else {
				keys[res.i] = res.key
			}
		case <-timer.C:
			failure = fmt.Errorf("%w: issuing vault keys took longer than %v", ErrTimeout, timeout)
		case <-reqCtx.Done():
			failure = reqCtx.Err()
		}
	}
	if failure == nil {
		cancel()
		return keys, nil
	}
	pending := len(specs) - got
	go func() {
		defer cancel()
		for _, k := range keys {
			if k != nil {
				_ = c.Revoke(ctx, k.ID)
			}
		}
		for ; pending > 0; pending-- {
			if res := <-results; res.err == nil {
				_ = c.Revoke(ctx, res.key.ID)
			}
		}
	}()
	return nil, failure
}

func (c *Client) revokeQuietly(keys []*VaultKey, logger *log.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range keys {
		if err := c.Revoke(ctx, k.ID); err != nil {
			logger.Printf("keyleash: could not revoke vault key %s (it stays usable until it expires): %v", k.ID, err)
		}
	}
}
