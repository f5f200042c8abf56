package keyleash_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	keyleash "github.com/keyleash/keyleash-go"
)

func newClient() *keyleash.Client { return keyleash.NewClient(gw.APIURL, gw.ProxyURL, gw.AdminToken) }

func stripeParams(capUSD float64) keyleash.IssueParams {
	return keyleash.IssueParams{
		Vendor:           "stripe",
		AllowedEndpoints: []string{"/v1/payment_intents", "/v1/payment_intents/*"},
		DailyUSDCap:      keyleash.USD(capUSD),
		ExpiresIn:        "5m",
	}
}

func mustStatus(t *testing.T, c *keyleash.Client, id, want string) *keyleash.VaultKey {
	t.Helper()
	k, err := c.GetKey(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if k.Status != want {
		t.Fatalf("key %s: status %q, want %q", id, k.Status, want)
	}
	return k
}

// proxyClient is how handler code calls Stripe: any HTTP client, through keyleash.Transport.
var proxyClient = func() *http.Client { return &http.Client{Transport: &keyleash.Transport{ProxyURL: gw.ProxyURL}} }

func createPaymentIntent(ctx context.Context, amount int) (*http.Response, error) {
	body, _ := json.Marshal(map[string]any{"amount": amount, "currency": "usd", "customer": "cus_123"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.stripe.com/v1/payment_intents", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk_live_never_sent") // replaced by the vault key
	resp, err := proxyClient().Do(req)
	if err != nil {
		return nil, err
	}
	if kerr := keyleash.ParseError(resp); kerr != nil {
		return resp, kerr
	}
	return resp, nil
}

func TestClientIssueGetListRevoke(t *testing.T) {
	c, ctx := newClient(), context.Background()
	p := stripeParams(100)
	p.Label = "go-crud"
	p.Metadata = map[string]string{"run": "go1"}
	k, err := c.IssueKey(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.ID, "key_") || !strings.HasPrefix(k.Token, "vk_test_") || *k.DailyUSDCap != 100 {
		t.Fatalf("unexpected key %+v", k)
	}
	mustStatus(t, c, k.ID, "active")
	l, err := c.ListKeys(ctx, keyleash.ListParams{LabelPrefix: "go-crud", Metadata: map[string]string{"run": "go1"}, Status: "active"})
	if err != nil || len(l.Data) != 1 || l.Data[0].ID != k.ID {
		t.Fatalf("list: %v %+v", err, l)
	}
	if r, err := c.RevokeKey(ctx, k.ID); err != nil || r.Status != "revoked" {
		t.Fatalf("revoke: %v %+v", err, r)
	}
	if _, err := c.RevokeKey(ctx, k.ID); err != nil {
		t.Fatalf("revoking twice must succeed: %v", err)
	}
	if _, err := c.RevokeKey(ctx, "key_doesnotexist"); !errors.Is(err, keyleash.ErrKeyNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if err := c.Revoke(ctx, "key_doesnotexist"); err != nil {
		t.Fatalf("Revoke treats an unknown id as done: %v", err)
	}
}

func TestTypedErrors(t *testing.T) {
	c, ctx := newClient(), context.Background()
	p := stripeParams(1)
	p.ExpiresIn = "forever"
	_, err := c.IssueKey(ctx, p)
	var kerr *keyleash.Error
	if !errors.As(err, &kerr) || kerr.Status != 400 || kerr.Code != "invalid_request" || kerr.Param != "expires_in" || !strings.HasPrefix(kerr.RequestID, "req_") {
		t.Fatalf("got %#v", err)
	}
	if !errors.Is(err, keyleash.ErrInvalidRequest) {
		t.Fatal("errors.Is with the sentinel")
	}
	bad := keyleash.NewClient(gw.APIURL, gw.ProxyURL, "not-the-admin-token-000")
	if _, err := bad.ListKeys(ctx, keyleash.ListParams{}); !errors.Is(err, keyleash.ErrUnauthorized) {
		t.Fatalf("got %v", err)
	}
	down := keyleash.NewClient("http://127.0.0.1:1", "http://127.0.0.1:1", "x")
	if _, err := down.ListKeys(ctx, keyleash.ListParams{}); !errors.Is(err, keyleash.ErrConnection) {
		t.Fatalf("got %v", err)
	}
}

// The seed flow: issue → call → 429 cap_exhausted → revoke → 401 key_revoked.
func TestIssueCallCapRevoke(t *testing.T) {
	c := newClient()
	before := len(stripeRequests(t))
	ctx, err := c.Issue(context.Background(), stripeParams(100))
	if err != nil {
		t.Fatal(err)
	}
	key, ok := keyleash.FromContext(ctx)
	if !ok {
		t.Fatal("no key in context")
	}
	resp, err := createPaymentIntent(ctx, 5000)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("charge: %v", err)
	}
	var pi struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&pi)
	if !strings.HasPrefix(pi.ID, "pi_") {
		t.Fatalf("pi %q", pi.ID)
	}
	seen := stripeRequests(t)
	if len(seen) != before+1 || seen[len(seen)-1].Authorization != "Bearer "+gw.StripeTestSecret || seen[len(seen)-1].Path != "/v1/payment_intents" {
		t.Fatalf("stripe saw %+v", seen[len(seen)-1])
	}
	_, err = createPaymentIntent(ctx, 6000)
	if !keyleash.IsCapExhausted(err) {
		t.Fatalf("want cap_exhausted, got %v", err)
	}
	var kerr *keyleash.Error
	if errors.As(err, &kerr); kerr.Status != 429 || kerr.Body["remaining_usd"] != 50.0 {
		t.Fatalf("got %+v", kerr)
	}
	if len(stripeRequests(t)) != before+1 {
		t.Fatal("a capped call reached Stripe")
	}
	if err := c.Revoke(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := createPaymentIntent(ctx, 100); !errors.Is(err, keyleash.ErrKeyRevoked) {
		t.Fatalf("want key_revoked, got %v", err)
	}
}

func TestTransportWithoutKey(t *testing.T) {
	_, err := createPaymentIntent(context.Background(), 100)
	if !errors.Is(err, keyleash.ErrNoVaultKey) {
		t.Fatalf("got %v", err)
	}
}

func TestVendorErrorsPassThrough(t *testing.T) {
	ctx, err := newClient().Issue(context.Background(), stripeParams(100))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"amount": {"100"}, "currency": {"usd"}, "payment_method": {"pm_card_chargeDeclined"}, "confirm": {"true"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.stripe.com/v1/payment_intents", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := proxyClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 402 || keyleash.ParseError(resp) != nil {
		t.Fatalf("status %d", resp.StatusCode)
	}
	b, _ := io.ReadAll(resp.Body) // still readable after ParseError
	if !strings.Contains(string(b), "card_declined") {
		t.Fatalf("body %s", b)
	}
}

func TestTTLForTimeout(t *testing.T) {
	if got := keyleash.TTLForTimeout(50 * time.Second); got != "60s" {
		t.Fatalf("got %s", got)
	}
	p := stripeParams(5)
	p.ExpiresIn = keyleash.TTLForTimeout(50 * time.Second)
	k, err := newClient().IssueKey(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if d := k.ExpiresAt.Sub(k.CreatedAt); d != time.Minute {
		t.Fatalf("ttl %v", d)
	}
}

// ---- middleware ----------------------------------------------------------------------------

type result struct {
	KeyID string `json:"key_id"`
	PI    string `json:"payment_intent"`
}

// app is the seed's Go service: the middleware issues the key, the handler charges through the
// proxy, a 429 cap_exhausted becomes the app's own 402.
func app(c *keyleash.Client, opts keyleash.MiddlewareOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/charge", func(w http.ResponseWriter, r *http.Request) {
		key, _ := keyleash.FromContext(r.Context())
		resp, err := createPaymentIntent(r.Context(), 5000)
		w.Header().Set("Content-Type", "application/json")
		if keyleash.IsCapExhausted(err) {
			w.WriteHeader(http.StatusPaymentRequired)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "spend limit reached for this request", "key_id": key.ID})
			return
		}
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		var pi struct{ ID string }
		_ = json.NewDecoder(resp.Body).Decode(&pi)
		_ = json.NewEncoder(w).Encode(result{KeyID: key.ID, PI: pi.ID})
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		_, has := keyleash.FromContext(r.Context())
		fmt.Fprintf(w, `{"has_key":%v}`, has)
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		id := ""
		if k, ok := keyleash.FromContext(r.Context()); ok {
			id = k.ID
		}
		fmt.Fprintf(w, `{"key_id":%q}`, id)
	})
	mux.HandleFunc("/multi", func(w http.ResponseWriter, r *http.Request) {
		s, _ := keyleash.FromContextFor(r.Context(), "stripe")
		rf, _ := keyleash.FromContextFor(r.Context(), "refunds")
		_ = json.NewEncoder(w).Encode(map[string]any{"stripe": s.ID, "refunds": rf.ID, "refunds_scope": rf.AllowedEndpoints})
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		k, _ := keyleash.FromContext(r.Context())
		w.Header().Set("X-Key-Id", k.ID)
		panicKeyID = k.ID
		panic("handler failed")
	})
	return c.Middleware(opts)(mux)
}

var panicKeyID string

func stripeOpts(capUSD float64) keyleash.MiddlewareOptions {
	return keyleash.MiddlewareOptions{Keys: []keyleash.KeySpec{{IssueParams: stripeParams(capUSD)}}}
}

func getJSON(t *testing.T, method, u string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func TestMiddlewareIssuesChargesRevokes(t *testing.T) {
	c := newClient()
	opts := stripeOpts(100)
	opts.Label = func(r *http.Request) string { return "go-mw " + r.URL.Path }
	srv := httptest.NewServer(app(c, opts))
	defer srv.Close()
	var a, b result
	if s := getJSON(t, "POST", srv.URL+"/charge", &a); s != 200 {
		t.Fatalf("status %d", s)
	}
	getJSON(t, "POST", srv.URL+"/charge", &b)
	if !strings.HasPrefix(a.PI, "pi_") || a.KeyID == b.KeyID {
		t.Fatalf("%+v %+v", a, b)
	}
	k := mustStatus(t, c, a.KeyID, "revoked")
	if k.SpendTodayUSD != 50 || k.Label != "go-mw /charge" {
		t.Fatalf("%+v", k)
	}
	mustStatus(t, c, b.KeyID, "revoked")
}

func TestMiddlewareCapExhaustedBecomes402(t *testing.T) {
	c := newClient()
	srv := httptest.NewServer(app(c, stripeOpts(10)))
	defer srv.Close()
	before := len(stripeRequests(t))
	var out result
	if s := getJSON(t, "POST", srv.URL+"/charge", &out); s != 402 {
		t.Fatalf("status %d", s)
	}
	if len(stripeRequests(t)) != before {
		t.Fatal("reached Stripe")
	}
	mustStatus(t, c, out.KeyID, "revoked")
}

func TestMiddlewareSkipsHealth(t *testing.T) {
	c := newClient()
	opts := stripeOpts(10)
	opts.Label = func(*http.Request) string { return "go-skip-check" }
	srv := httptest.NewServer(app(c, opts))
	defer srv.Close()
	var out map[string]bool
	getJSON(t, "GET", srv.URL+"/health", &out)
	if out["has_key"] {
		t.Fatal("health got a key")
	}
	if l, _ := c.ListKeys(context.Background(), keyleash.ListParams{LabelPrefix: "go-skip-check"}); len(l.Data) != 0 {
		t.Fatal("a key was issued for /health")
	}
}

func TestMiddlewareRevokesOnPanic(t *testing.T) {
	c := newClient()
	srv := httptest.NewUnstartedServer(app(c, stripeOpts(10)))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	defer srv.Close()
	_, _ = http.Get(srv.URL + "/panic") // the server aborts the connection
	mustStatus(t, c, panicKeyID, "revoked")
}

func TestMiddlewareSeveralVendors(t *testing.T) {
	c := newClient()
	refunds := keyleash.IssueParams{Vendor: "stripe", AllowedEndpoints: []string{"POST /v1/refunds"}, DailyUSDCap: keyleash.USD(20), ExpiresIn: "5m"}
	opts := keyleash.MiddlewareOptions{Keys: []keyleash.KeySpec{{IssueParams: stripeParams(100)}, {Name: "refunds", IssueParams: refunds}}}
	srv := httptest.NewServer(app(c, opts))
	defer srv.Close()
	var out struct {
		Stripe, Refunds string
		RefundsScope    []string `json:"refunds_scope"`
	}
	getJSON(t, "GET", srv.URL+"/multi", &out)
	if out.Stripe == "" || out.Stripe == out.Refunds || len(out.RefundsScope) != 1 || out.RefundsScope[0] != "POST /v1/refunds" {
		t.Fatalf("%+v", out)
	}
	mustStatus(t, c, out.Stripe, "revoked")
	mustStatus(t, c, out.Refunds, "revoked")
}

func TestMiddlewareFailClosed(t *testing.T) {
	down := keyleash.NewClient("http://127.0.0.1:1", "http://127.0.0.1:1", "x")
	srv := httptest.NewServer(app(down, stripeOpts(10)))
	defer srv.Close()
	var out map[string]string
	if s := getJSON(t, "GET", srv.URL+"/whoami", &out); s != 503 || out["code"] != keyleash.UnavailableCode {
		t.Fatalf("%d %v", s, out)
	}
}

func TestMiddlewareFailOpen(t *testing.T) {
	down := keyleash.NewClient("http://127.0.0.1:1", "http://127.0.0.1:1", "x")
	var logs bytes.Buffer
	opts := stripeOpts(10)
	opts.FailOpen = true
	opts.Logger = log.New(&logs, "", 0)
	srv := httptest.NewServer(app(down, opts))
	defer srv.Close()
	var out map[string]string
	if s := getJSON(t, "GET", srv.URL+"/whoami", &out); s != 200 || out["key_id"] != "" {
		t.Fatalf("%d %v", s, out)
	}
	if !strings.Contains(logs.String(), "FailOpen") {
		t.Fatalf("no warning: %q", logs.String())
	}
}

func TestMiddlewareIssueTimeoutRevokesLateKey(t *testing.T) {
	// A control API that answers after 400 ms (forwarding to the real one).
	real := newClient()
	target, _ := url.Parse(gw.APIURL)
	slowAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			time.Sleep(400 * time.Millisecond)
		}
		req, _ := http.NewRequest(r.Method, target.String()+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer slowAPI.Close()
	slow := keyleash.NewClient(slowAPI.URL, gw.ProxyURL, gw.AdminToken)
	opts := stripeOpts(10)
	opts.IssueTimeout = 50 * time.Millisecond
	opts.Label = func(*http.Request) string { return "go-late-issue" }
	srv := httptest.NewServer(app(slow, opts))
	defer srv.Close()
	start := time.Now()
	if s := getJSON(t, "GET", srv.URL+"/whoami", nil); s != 503 {
		t.Fatalf("status %d", s)
	}
	if time.Since(start) > 350*time.Millisecond {
		t.Fatal("did not give up at the timeout")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		l, err := real.ListKeys(context.Background(), keyleash.ListParams{LabelPrefix: "go-late-issue"})
		if err == nil && len(l.Data) == 1 && l.Data[0].Status == "revoked" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the late key was not revoked: %v %+v", err, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestKillSwitch(t *testing.T) {
	resp, err := http.Get(gw.APIURL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Paths map[string]any }
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if _, ok := doc.Paths["/v1/keys/revoke"]; !ok {
		t.Skip("the gateway has no POST /v1/keys/revoke yet (kill-switch route not merged); this test runs once it does")
	}
	c, ctx := newClient(), context.Background()
	var ids []string
	for _, l := range []string{"go-ks-agent-7-a", "go-ks-agent-7-b", "go-ks-agent-8"} {
		p := stripeParams(5)
		p.Label = l
		k, err := c.IssueKey(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.ID)
	}
	dry, err := c.RevokeKeys(ctx, keyleash.RevokeFilter{LabelPrefix: "go-ks-agent-7", DryRun: true})
	if err != nil || dry.Matched != 2 || dry.Revoked != 0 {
		t.Fatalf("%v %+v", err, dry)
	}
	res, err := c.RevokeKeys(ctx, keyleash.RevokeFilter{LabelPrefix: "go-ks-agent-7"})
	if err != nil || res.Matched != 2 || res.Revoked != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	mustStatus(t, c, ids[0], "revoked")
	mustStatus(t, c, ids[1], "revoked")
	mustStatus(t, c, ids[2], "active")
	if _, err := c.RevokeKeys(ctx, keyleash.RevokeFilter{}); !errors.Is(err, keyleash.ErrInvalidRequest) {
		t.Fatalf("empty filter: %v", err)
	}
}

func TestMiddlewareDefaultLabelOfAnIssuedKeyIsOneTheGatewayTakes(t *testing.T) {
	c := newClient()
	var id string
	h := c.Middleware(stripeOpts(10))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, _ := keyleash.FromContext(r.Context())
		id = k.ID
	}))
	long := "/" + strings.Repeat("p", 300)
	for path, want := range map[string]string{
		"/k%0Ax%E2%80%AEy": "GET /k\uFFFDx\uFFFDy", // decodes to "/k\nx\u202ey"
		long:               ("GET " + long)[:200],
	} {
		id = ""
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 || id == "" {
			t.Fatalf("%s: status %d: %s", want, rec.Code, rec.Body)
		}
		k, err := c.GetKey(context.Background(), id)
		if err != nil || k.Label != want {
			t.Fatalf("label %q, want %q (%v)", k.Label, want, err)
		}
	}
}
