package keyleash

import (
	"net/http"
	"net/url"
	"strings"
)

// Transport is an http.RoundTripper that sends requests through the keyleash proxy with the
// vault key in the request's context. Give it to any client that takes an *http.Client — e.g.
// stripe-go:
//
//	hc := &http.Client{Transport: &keyleash.Transport{ProxyURL: proxyURL}}
//	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{HTTPClient: hc})
//	// and pass the request's context in params: params.Context = r.Context()
//
// A request for https://api.stripe.com/v1/payment_intents goes to
// {ProxyURL}/stripe/v1/payment_intents with "Authorization: Bearer <vault key>" (the client's
// own credentials are replaced). A request already addressed to the proxy keeps its path.
// Transport does not interpret answers; use ParseError on the response.
type Transport struct {
	// ProxyURL is the proxy's base URL.
	ProxyURL string
	// Key picks the key in the context by name or vendor; "" takes the first key.
	Key string
	// Vendor is the path prefix on the proxy; "" uses the key's vendor.
	Vendor string
	// Base does the actual round trip; nil means http.DefaultTransport.
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var key *VaultKey
	var ok bool
	if t.Key != "" {
		key, ok = FromContextFor(req.Context(), t.Key)
	} else {
		key, ok = FromContext(req.Context())
	}
	if !ok {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, ErrNoVaultKey
	}
	proxy, err := url.Parse(strings.TrimRight(t.ProxyURL, "/"))
	if err != nil || proxy.Host == "" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &url.Error{Op: "keyleash", URL: t.ProxyURL, Err: err}
	}
	out := req.Clone(req.Context())
	if req.URL.Host != proxy.Host {
		vendor := t.Vendor
		if vendor == "" {
			vendor = key.Vendor
		}
		u := *req.URL
		u.Scheme = proxy.Scheme
		u.Host = proxy.Host
		u.Path = proxy.Path + "/" + vendor + req.URL.Path
		u.RawPath = ""
		out.URL = &u
		out.Host = ""
	}
	out.Header.Del("Authorization")
	out.Header.Del("Proxy-Authorization")
	out.Header.Set("Authorization", "Bearer "+key.Token)
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(out)
	if err != nil {
		if req.Context().Err() != nil {
			return nil, err // the caller's own cancellation or deadline
		}
		// The proxy was not reached or died mid-request: one typed error, errors.Is(err, ErrConnection).
		code := "connection_error"
		if isTimeout(err) {
			code = "timeout"
		}
		return nil, &Error{Code: code, Message: "keyleash proxy unreachable (" + req.Method + " " + out.URL.Path + ")"}
	}
	return resp, nil
}

// ProxyHTTPClient returns an *http.Client whose requests go through the proxy with the context's
// vault key (see Transport). key picks the key by name or vendor ("" = the first).
func (c *Client) ProxyHTTPClient(key string) *http.Client {
	return &http.Client{Transport: &Transport{ProxyURL: c.ProxyURL, Key: key}}
}
