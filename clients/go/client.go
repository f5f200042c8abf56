// Package keyleash is the Go client for the keyleash gateway: the control API (issue, read,
// list, revoke vault keys, the kill switch, budgets, minting keys), vault keys minted and
// narrowed locally (Minter, Narrow), vault keys carried in context.Context, HTTP middleware that
// issues or mints a key per request, and an http.RoundTripper that sends any client's calls
// through the keyleash proxy with the context's key. Standard library only.
package keyleash

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Client talks to the control API (admin token) and knows the proxy's base URL.
type Client struct {
	APIURL     string
	ProxyURL   string
	AdminToken string
	// HTTPClient for control API calls; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// MaxRetries of a control API call that could not reach keyleash or got 429/502/503/504,
	// with exponential backoff from 100 ms (or Retry-After, up to 2 s). 0 means 2; -1 none.
	// Only calls safe to repeat are retried: reads, revocations, and IssueKey, which sends an
	// Idempotency-Key so a retry answers the key already issued.
	MaxRetries int
}

// NewClient returns a client; empty arguments are read from KEYLEASH_API_URL,
// KEYLEASH_PROXY_URL and KEYLEASH_ADMIN_TOKEN.
func NewClient(apiURL, proxyURL, adminToken string) *Client {
	if apiURL == "" {
		apiURL = os.Getenv("KEYLEASH_API_URL")
	}
	if proxyURL == "" {
		proxyURL = os.Getenv("KEYLEASH_PROXY_URL")
	}
	if adminToken == "" {
		adminToken = os.Getenv("KEYLEASH_ADMIN_TOKEN")
	}
	return &Client{APIURL: strings.TrimRight(apiURL, "/"), ProxyURL: strings.TrimRight(proxyURL, "/"), AdminToken: adminToken}
}

// VaultKey is a key as the API sends it. Token is only set in the answer to issuing.
type VaultKey struct {
	ID                string            `json:"id"`
	Token             string            `json:"token,omitempty"`
	Label             string            `json:"label"`
	Vendor            string            `json:"vendor"`
	Mode              string            `json:"mode"`
	AllowedEndpoints  []string          `json:"allowed_endpoints"`
	DailyUSDCap       *float64          `json:"daily_usd_cap"`
	Metadata          map[string]string `json:"metadata"`
	Status            string            `json:"status"`
	CreatedAt         time.Time         `json:"created_at"`
	ExpiresAt         time.Time         `json:"expires_at"`
	RevokedAt         *time.Time        `json:"revoked_at,omitempty"`
	SpendTodayUSD     float64           `json:"spend_today_usd"`
	RemainingTodayUSD *float64          `json:"remaining_today_usd,omitempty"`
	RequestCount      int64             `json:"request_count"`
	Budgets           []string          `json:"budgets,omitempty"`
	RateLimit         *RateLimit        `json:"rate_limit,omitempty"`
	// Origin is "issued" (POST /v1/keys) or "minted" (by a Minter, or narrowed).
	Origin string `json:"origin,omitempty"`
	// MintingKeyID is the minting key a minted key came from.
	MintingKeyID string `json:"minting_key_id,omitempty"`
	// ParentID is the key a narrowed key was narrowed from ("" otherwise).
	ParentID string `json:"parent_id,omitempty"`
	// Methods, when set, are the only methods a minted key allows on top of AllowedEndpoints.
	Methods []string `json:"methods,omitempty"`
	// DailyCapMicros is DailyUSDCap in exact micro-dollars.
	DailyCapMicros *int64 `json:"daily_cap_micros,omitempty"`
}

// RateLimit is a token bucket of Requests, refilled at Requests per Per ("second", "minute", "hour").
type RateLimit struct {
	Requests int    `json:"requests"`
	Per      string `json:"per"`
}

// IssueParams is what a key is issued with.
type IssueParams struct {
	Vendor           string   `json:"vendor"`
	AllowedEndpoints []string `json:"allowed_endpoints"`
	// DailyUSDCap: nil means no cap. Use keyleash.USD(100).
	DailyUSDCap *float64 `json:"daily_usd_cap,omitempty"`
	// ExpiresIn: "30s", "5m", "1h", "24h". Empty means the server default. See TTL.
	ExpiresIn string            `json:"expires_in,omitempty"`
	Label     string            `json:"label,omitempty"`
	Mode      string            `json:"mode,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	// Budgets every call of the key also reserves against (each must exist and not be frozen).
	Budgets []string `json:"budgets,omitempty"`
	// RateLimit for this key alone (429 rate_limited past it).
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
}

// USD returns a pointer for IssueParams.DailyUSDCap.
func USD(v float64) *float64 { return &v }

// TTL formats a duration for IssueParams.ExpiresIn (whole seconds, rounded up).
func TTL(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return fmt.Sprintf("%ds", s)
}

// TTLForTimeout is the TTL for a task with this timeout: timeout + 20 %.
func TTLForTimeout(timeout time.Duration) string { return TTL(timeout + timeout/5) }

// ListParams filters ListKeys.
type ListParams struct {
	Status, Vendor, Mode, LabelPrefix, Cursor string
	Metadata                                  map[string]string
	Limit                                     int
}

// KeyList is one page of keys.
type KeyList struct {
	Data       []VaultKey `json:"data"`
	HasMore    bool       `json:"has_more"`
	NextCursor *string    `json:"next_cursor"`
}

// RevokeFilter chooses the keys of the kill switch.
type RevokeFilter struct {
	LabelPrefix string            `json:"label_prefix,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Vendor      string            `json:"vendor,omitempty"`
	Mode        string            `json:"mode,omitempty"`
	// Budget: only keys attached to this budget.
	Budget string `json:"budget,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	// All is required (and only allowed) when no filter is given.
	All bool `json:"all,omitempty"`
}

// RevokeResult is the kill switch's answer.
type RevokeResult struct {
	Matched int      `json:"matched"`
	Revoked int      `json:"revoked"`
	DryRun  bool     `json:"dry_run"`
	KeyIDs  []string `json:"key_ids"`
}

// IssueKey issues a key (the API answers 201). The returned key's Token is its secret. It is
// sent with an Idempotency-Key (a fresh one per call, reused by its retries), so a retry after a
// lost answer gets the key already issued, never a second one; IssueKeyIdempotent sets your own.
func (c *Client) IssueKey(ctx context.Context, p IssueParams) (*VaultKey, error) {
	return c.IssueKeyIdempotent(ctx, p, newIdempotencyKey())
}

// IssueKeyIdempotent is IssueKey with your own Idempotency-Key (1–255 characters): the same key
// and params within 24 hours answer the key first issued, token included.
func (c *Client) IssueKeyIdempotent(ctx context.Context, p IssueParams, idempotencyKey string) (*VaultKey, error) {
	var k VaultKey
	if err := c.callIdem(ctx, http.MethodPost, "/v1/keys", p, http.StatusCreated, &k, idempotencyKey); err != nil {
		return nil, err
	}
	return &k, nil
}

func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// GetKey reads a key with its spend today, remaining cap, status and request count.
func (c *Client) GetKey(ctx context.Context, id string) (*VaultKey, error) {
	var k VaultKey
	if err := c.call(ctx, http.MethodGet, "/v1/keys/"+url.PathEscape(id), nil, http.StatusOK, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// ListKeys returns one page of keys, newest first.
func (c *Client) ListKeys(ctx context.Context, p ListParams) (*KeyList, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("status", p.Status)
	set("vendor", p.Vendor)
	set("mode", p.Mode)
	set("label_prefix", p.LabelPrefix)
	set("cursor", p.Cursor)
	if p.Limit > 0 {
		q.Set("limit", fmt.Sprint(p.Limit))
	}
	for k, v := range p.Metadata {
		q.Set("metadata["+k+"]", v)
	}
	path := "/v1/keys"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var l KeyList
	if err := c.call(ctx, http.MethodGet, path, nil, http.StatusOK, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// RevokeKey revokes a key. Idempotent: a revoked key answers again; an unknown id is
// ErrKeyNotFound.
func (c *Client) RevokeKey(ctx context.Context, id string) (*VaultKey, error) {
	var k VaultKey
	if err := c.call(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(id), nil, http.StatusOK, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// RevokeKeys is the kill switch (POST /v1/keys/revoke): revokes every active key matching f.
func (c *Client) RevokeKeys(ctx context.Context, f RevokeFilter) (*RevokeResult, error) {
	var r RevokeResult
	if err := c.call(ctx, http.MethodPost, "/v1/keys/revoke", f, http.StatusOK, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return defaultHTTPClient
}

var defaultHTTPClient = &http.Client{Timeout: 10 * time.Second}

// callFor is call decoding the answer into a new T.
func callFor[T any](ctx context.Context, c *Client, method, path string, body any, want int) (*T, error) {
	var out T
	if err := c.call(ctx, method, path, body, want, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// pagePath is a list route's path for one page: limit 0 means the server default, cursor "" the
// first page.
func pagePath(base string, limit int, cursor string) string {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if len(q) == 0 {
		return base
	}
	return base + "?" + q.Encode()
}

func (c *Client) call(ctx context.Context, method, path string, body any, want int, out any) error {
	return c.callIdem(ctx, method, path, body, want, out, "")
}

// callIdem is call with retries for what is safe to repeat (see Client.MaxRetries).
func (c *Client) callIdem(ctx context.Context, method, path string, body any, want int, out any, idem string) error {
	retries := c.MaxRetries
	if retries == 0 {
		retries = 2
	}
	if retries < 0 || !(method == http.MethodGet || method == http.MethodDelete || idem != "") {
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		err := c.callOnce(ctx, method, path, body, want, out, idem)
		var e *Error
		if err == nil || attempt >= retries || !errors.As(err, &e) || ctx.Err() != nil {
			return err
		}
		switch {
		case e.Status == 0, e.Status == 429, e.Status == 502, e.Status == 503, e.Status == 504:
		default:
			return err
		}
		wait := time.Duration(float64(100*time.Millisecond) * float64(int(1)<<attempt) * (0.5 + mrand.Float64()/2))
		if e.RetryAfter > 0 {
			wait = time.Duration(e.RetryAfter) * time.Second
		}
		if wait > 2*time.Second {
			wait = 2 * time.Second
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

func (c *Client) callOnce(ctx context.Context, method, path string, body any, want int, out any, idem string) error {
	if c.APIURL == "" || c.AdminToken == "" {
		return errors.New("keyleash: Client needs APIURL and AdminToken (or KEYLEASH_API_URL / KEYLEASH_ADMIN_TOKEN)")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.APIURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		code := "connection_error"
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			code = "timeout"
		}
		return &Error{Code: code, Message: fmt.Sprintf("keyleash control API unreachable or too slow (%s %s)", method, strings.SplitN(path, "?", 2)[0])}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		if b, ok := keyleashBody(raw, true); ok {
			return errorFromBody(resp, b)
		}
		return &Error{Status: resp.StatusCode, Code: fmt.Sprintf("http_%d", resp.StatusCode), Message: truncate(string(raw), 200)}
	}
	return json.Unmarshal(raw, out)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
