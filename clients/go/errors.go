package keyleash

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// Error is an error keyleash answered with (docs/errors.md). Branch on Code, or use errors.Is
// with the sentinels below: errors.Is(err, keyleash.ErrCapExhausted).
type Error struct {
	// Status is the HTTP status (0 when keyleash could not be reached).
	Status    int
	Code      string
	Message   string
	Param     string
	RequestID string
	// RetryAfter is the Retry-After header of a rate_limited answer, in seconds.
	RetryAfter int
	// Body is the whole JSON body.
	Body map[string]any
}

func (e *Error) Error() string {
	if e.Message == "" || e.Message == e.Code {
		return "keyleash: " + e.Code
	}
	return fmt.Sprintf("keyleash: %s: %s", e.Code, e.Message)
}

// Is matches another *Error with the same Code, so errors.Is works with the sentinels.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrUnauthorized         = &Error{Code: "unauthorized"}
	ErrInvalidRequest       = &Error{Code: "invalid_request"}
	ErrKeyNotFound          = &Error{Code: "key_not_found"}
	ErrMintingKeyNotFound   = &Error{Code: "minting_key_not_found"}
	ErrBudgetNotFound       = &Error{Code: "budget_not_found"}
	ErrBudgetExists         = &Error{Code: "budget_exists"}
	ErrBudgetInUse          = &Error{Code: "budget_in_use"}
	ErrBudgetFrozen         = &Error{Code: "budget_frozen"}
	ErrPolicyViolation      = &Error{Code: "policy_violation"}
	ErrIdempotencyKeyReused = &Error{Code: "idempotency_key_reused"}
	ErrInvalidKey           = &Error{Code: "invalid_key"}
	ErrKeyExpired           = &Error{Code: "key_expired"}
	ErrKeyRevoked           = &Error{Code: "key_revoked"}
	ErrEndpointNotAllowed   = &Error{Code: "endpoint_not_allowed"}
	ErrCostUnknown          = &Error{Code: "cost_unknown"}
	ErrCapExhausted         = &Error{Code: "cap_exhausted"}
	ErrRateLimited          = &Error{Code: "rate_limited"}
	ErrUpstream             = &Error{Code: "upstream_error"}
	ErrUpstreamTimeout      = &Error{Code: "upstream_timeout"}
	// ErrTimeout: issuing did not finish within the timeout. ErrConnection: keyleash unreachable.
	ErrTimeout    = &Error{Code: "timeout"}
	ErrConnection = &Error{Code: "connection_error"}
)

// ErrNoVaultKey is returned by the Transport when the request's context holds no vault key.
var ErrNoVaultKey = errors.New("keyleash: no vault key in the request's context")

// IsCapExhausted reports whether v — an error, or a proxy *http.Response — is keyleash's 429
// cap_exhausted (the integrations answer it with their own 402).
func IsCapExhausted(v any) bool { return CodeOf(v) == "cap_exhausted" }

// IsKeyExpired reports whether v (an error or a proxy *http.Response) is 401 key_expired: the key
// outlived its TTL; issue a new one.
func IsKeyExpired(v any) bool { return CodeOf(v) == "key_expired" }

// IsKeyRevoked reports whether v (an error or a proxy *http.Response) is 401 key_revoked.
func IsKeyRevoked(v any) bool { return CodeOf(v) == "key_revoked" }

// IsEndpointNotAllowed reports whether v (an error or a proxy *http.Response) is 403
// endpoint_not_allowed: the key may not call that method and path.
func IsEndpointNotAllowed(v any) bool { return CodeOf(v) == "endpoint_not_allowed" }

// IsUnavailable reports whether err means keyleash could not be reached: the control API or the
// proxy (through Transport) did not answer, or not in time (ErrConnection / ErrTimeout, also
// inside the *url.Error an http.Client returns).
func IsUnavailable(err error) bool {
	return errors.Is(err, ErrConnection) || errors.Is(err, ErrTimeout)
}

// CodeOf returns keyleash's error code carried by v: an error (see Code), or a proxy
// *http.Response holding one of keyleash's refusals (its body stays readable). "" otherwise,
// including for the vendor's own errors.
func CodeOf(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case *http.Response:
		if x == nil {
			return ""
		}
		return Code(ParseError(x))
	case error:
		return Code(x)
	}
	return ""
}

// Code returns keyleash's error code carried by err, or "".
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ParseError reads a proxy (or control API) answer and returns its *Error when it is one of
// keyleash's own refusals, or nil: for a success, or for the vendor's own error (e.g. Stripe's
// 402 card_declined), which passes through untouched. The body stays readable either way.
func ParseError(resp *http.Response) error {
	if resp.StatusCode < 400 {
		return nil
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytesReader(raw))
	if err != nil {
		return nil
	}
	body, ok := keyleashBody(raw, false)
	if !ok {
		return nil
	}
	return errorFromBody(resp, body)
}

func errorFromBody(resp *http.Response, body map[string]any) *Error {
	str := func(k string) string { s, _ := body[k].(string); return s }
	e := &Error{Status: resp.StatusCode, Code: str("code"), Message: str("message"), Param: str("param"), RequestID: str("request_id"), Body: body}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = ra
	}
	return e
}

// keyleashBody parses a JSON error body; strict=false demands keyleash's markers (so vendor
// errors are not mistaken for keyleash's), the control API only needs a top-level code.
func keyleashBody(raw []byte, controlAPI bool) (map[string]any, bool) {
	var body map[string]any
	if json.Unmarshal(raw, &body) != nil {
		return nil, false
	}
	if _, ok := body["code"].(string); !ok {
		return nil, false
	}
	if controlAPI {
		return body, true
	}
	if inner, ok := body["error"].(map[string]any); ok && inner["type"] == "keyleash_error" {
		return body, true
	}
	if _, ok := body["request_id"].(string); ok {
		return body, true
	}
	return nil, false
}
