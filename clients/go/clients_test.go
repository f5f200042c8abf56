package keyleash_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	keyleash "github.com/keyleash/keyleash-go"
)

// What real services hit first: keyleash's refusals read from any *http.Response, an unreachable
// proxy as one typed error, issuance retried without making two keys, and the README's install.

func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func TestHelpersReadAnyResponse(t *testing.T) {
	c := newClient()
	ctx := context.Background()
	capped, err := c.IssueKey(ctx, stripeParams(0))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := createPaymentIntent(keyleash.WithVaultKey(ctx, "stripe", capped), 500)
	if resp == nil {
		t.Fatal(err)
	}
	if !keyleash.IsCapExhausted(resp) || !keyleash.IsCapExhausted(err) {
		t.Fatalf("IsCapExhausted: response %v, error %v", keyleash.IsCapExhausted(resp), err)
	}
	if resp.Header.Get("Stripe-Should-Retry") != "false" || resp.Header.Get("X-Should-Retry") != "false" {
		t.Fatalf("refusal headers: %v", resp.Header)
	}
	// The body is still readable after the helper looked at it.
	var body map[string]any
	if json.NewDecoder(resp.Body).Decode(&body) != nil || body["code"] != "cap_exhausted" {
		t.Fatalf("body: %v", body)
	}

	revoked, _ := c.IssueKey(ctx, stripeParams(10))
	if _, err := c.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	resp, _ = createPaymentIntent(keyleash.WithVaultKey(ctx, "stripe", revoked), 500)
	if !keyleash.IsKeyRevoked(resp) || keyleash.IsKeyExpired(resp) || keyleash.IsCapExhausted(resp) {
		t.Fatalf("revoked key: %s", keyleash.CodeOf(resp))
	}

	narrow, _ := c.IssueKey(ctx, keyleash.IssueParams{Vendor: "stripe", AllowedEndpoints: []string{"GET /v1/customers"}, ExpiresIn: "5m"})
	resp, _ = createPaymentIntent(keyleash.WithVaultKey(ctx, "stripe", narrow), 500)
	if !keyleash.IsEndpointNotAllowed(resp) {
		t.Fatalf("refused endpoint: %s", keyleash.CodeOf(resp))
	}
	if keyleash.IsKeyExpired(&keyleash.Error{Code: "key_expired"}) != true || keyleash.CodeOf(nil) != "" {
		t.Fatal("IsKeyExpired / CodeOf(nil)")
	}
}

func TestTransportUnreachableProxyIsErrConnection(t *testing.T) {
	c := newClient()
	ctx := context.Background()
	key, err := c.IssueKey(ctx, stripeParams(10))
	if err != nil {
		t.Fatal(err)
	}
	dead := deadURL(t)
	hc := &http.Client{Transport: &keyleash.Transport{ProxyURL: dead}}
	req, _ := http.NewRequestWithContext(keyleash.WithVaultKey(ctx, "stripe", key), "GET", "https://api.stripe.com/v1/payment_intents", nil)
	_, err = hc.Do(req)
	if !errors.Is(err, keyleash.ErrConnection) || !keyleash.IsUnavailable(err) {
		t.Fatalf("want ErrConnection, got %v", err)
	}
	if strings.Contains(keyleash.Code(err), ":") {
		t.Fatalf("code %q", keyleash.Code(err))
	}
	// No key in the context: ErrNoVaultKey, through the *url.Error too.
	req2, _ := http.NewRequest("GET", "https://api.stripe.com/v1/payment_intents", nil)
	if _, err := hc.Do(req2); !errors.Is(err, keyleash.ErrNoVaultKey) {
		t.Fatalf("want ErrNoVaultKey, got %v", err)
	}
}

func TestMiddleware503NamesNoInternals(t *testing.T) {
	dead := deadURL(t)
	down := keyleash.NewClient(dead, gw.ProxyURL, gw.AdminToken)
	down.MaxRetries = -1
	srv := httptest.NewServer(app(down, stripeOpts(10)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out map[string]string
	_ = json.Unmarshal(raw, &out)
	if resp.StatusCode != 503 || out["code"] != keyleash.UnavailableCode || out["reason"] != "connection_error" {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	port := dead[strings.LastIndex(dead, ":")+1:]
	if strings.Contains(string(raw), port) || strings.Contains(string(raw), "dial") {
		t.Fatalf("503 body leaks internals: %s", raw)
	}
}

// lossyFront forwards to the control API; the first POST /v1/keys is forwarded, then its
// connection is cut before the answer.
func lossyFront(t *testing.T, seen *[]string) *httptest.Server {
	t.Helper()
	target, _ := url.Parse(gw.APIURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	dropped := false
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v1/keys" {
			rp.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		*seen = append(*seen, r.Header.Get("Idempotency-Key"))
		drop := !dropped
		dropped = true
		mu.Unlock()
		if !drop {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r) // the gateway issues the key …
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // … and the answer is lost
		}
	}))
}

func TestIssueRetriedAfterALostAnswerMakesOneKey(t *testing.T) {
	var seen []string
	front := lossyFront(t, &seen)
	defer front.Close()
	flaky := keyleash.NewClient(front.URL, gw.ProxyURL, gw.AdminToken)
	label := "go-lost-" + time.Now().Format("150405.000000")
	ctx := context.Background()
	key, err := flaky.IssueKey(ctx, keyleash.IssueParams{Vendor: "stripe", AllowedEndpoints: []string{"GET /v1/customers"}, Label: label, ExpiresIn: "5m"})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] == "" || seen[0] != seen[1] {
		t.Fatalf("Idempotency-Keys sent: %q", seen)
	}
	list, err := newClient().ListKeys(ctx, keyleash.ListParams{LabelPrefix: label})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != 1 || list.Data[0].ID != key.ID || key.Token == "" {
		t.Fatalf("keys with label %s: %+v", label, list.Data)
	}
}

const installApp = `package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	keyleash "github.com/keyleash/keyleash-go"
)

func main() {
	c := keyleash.NewClient("", "", "") // KEYLEASH_API_URL, KEYLEASH_PROXY_URL, KEYLEASH_ADMIN_TOKEN
	ctx := context.Background()
	var key *keyleash.VaultKey
	key, err := c.IssueKey(ctx, keyleash.IssueParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/payment_intents"}, DailyUSDCap: keyleash.USD(0), ExpiresIn: "5m"})
	if err != nil {
		fmt.Println("issue:", err)
		os.Exit(1)
	}
	defer c.RevokeKey(ctx, key.ID)
	hc := c.ProxyHTTPClient("stripe")
	req, _ := http.NewRequestWithContext(keyleash.WithVaultKey(ctx, "stripe", key), "POST", "https://api.stripe.com/v1/payment_intents", strings.NewReader("amount=500&currency=usd"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Println("call:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	fmt.Println("cap_exhausted:", keyleash.IsCapExhausted(resp))
}
`

// The README's install: a fresh module, `replace` to this directory, offline (GOPROXY=off).
func TestInstallAsDocumented(t *testing.T) {
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gomod := "module example.com/tinyapp\n\ngo 1.19\n\nrequire github.com/keyleash/keyleash-go v0.0.0\n\nreplace github.com/keyleash/keyleash-go => " + here + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(installApp), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod", "GOWORK=off",
		"KEYLEASH_API_URL="+gw.APIURL, "KEYLEASH_PROXY_URL="+gw.ProxyURL, "KEYLEASH_ADMIN_TOKEN="+gw.AdminToken)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "cap_exhausted: true") {
		t.Fatalf("output: %s", out)
	}
}

func TestMintedKeyOverPolicyIsClampedAndReportedAsSuch(t *testing.T) {
	c := newClient()
	ctx := context.Background()
	mk, err := c.CreateMintingKey(ctx, keyleash.CreateMintingKeyParams{Vendors: []string{"stripe"}, AllowedEndpoints: []string{"GET /v1/customers"}, MaxDailyUSDCap: keyleash.USD(5), MaxTTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := keyleash.NewMinter(mk.Secret)
	if err != nil {
		t.Fatal(err)
	}
	m := plain.WithPolicy(mk)
	key, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"GET /v1/customers"}, DailyUSDCap: keyleash.USD(100), ExpiresIn: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if key.DailyCapMicros == nil || *key.DailyCapMicros != 5_000_000 || key.ExpiresAt.Sub(key.CreatedAt) != 10*time.Minute {
		t.Fatalf("reported scope: cap %v, ttl %v", key.DailyCapMicros, key.ExpiresAt.Sub(key.CreatedAt))
	}
	resp, err := c.ProxyHTTPClient("stripe").Do(mustReq(t, keyleash.WithVaultKey(ctx, "stripe", key), "https://api.stripe.com/v1/customers"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first call: %v %v", err, resp)
	}
	resp.Body.Close()
	seen, err := c.GetKey(ctx, key.ID)
	if err != nil {
		t.Fatal(err)
	}
	if *seen.DailyCapMicros != *key.DailyCapMicros || !seen.ExpiresAt.Equal(key.ExpiresAt) {
		t.Fatalf("gateway: cap %v exp %v; minter: cap %v exp %v", *seen.DailyCapMicros, seen.ExpiresAt, *key.DailyCapMicros, key.ExpiresAt)
	}
	asked, _ := plain.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"GET /v1/customers"}, DailyUSDCap: keyleash.USD(100)})
	if *asked.DailyCapMicros != 100_000_000 {
		t.Fatalf("without the policy: %v", *asked.DailyCapMicros)
	}
}

func mustReq(t *testing.T, ctx context.Context, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
