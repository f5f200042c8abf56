package keyleash

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Budget is a named USD limit per period ("day", "month" or "total") that every attached key's
// calls also reserve against, with its spend in Window.
type Budget struct {
	ID          string            `json:"id"`
	LimitUSD    float64           `json:"limit_usd"`
	LimitMicros int64             `json:"limit_micros"`
	Period      string            `json:"period"`
	Frozen      bool              `json:"frozen"`
	Metadata    map[string]string `json:"metadata"`
	RateLimit   *RateLimit        `json:"rate_limit"`
	// Window is the window the spend is for: YYYY-MM-DD, YYYY-MM or "total".
	Window          string    `json:"window"`
	SpendUSD        float64   `json:"spend_usd"`
	SpendMicros     int64     `json:"spend_micros"`
	RemainingUSD    float64   `json:"remaining_usd"`
	RemainingMicros int64     `json:"remaining_micros"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// CreateBudgetParams is what a budget is created with.
type CreateBudgetParams struct {
	// ID is the budget name, e.g. "user:u42" (1-100 of A-Z a-z 0-9 _ . : @ -).
	ID       string  `json:"id"`
	LimitUSD float64 `json:"limit_usd"`
	// Period: "day" (UTC), "month" (UTC calendar month) or "total".
	Period    string            `json:"period"`
	Frozen    bool              `json:"frozen,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	RateLimit *RateLimit        `json:"rate_limit,omitempty"`
}

// UpdateBudgetParams changes a budget; nil fields stay as they are.
type UpdateBudgetParams struct {
	LimitUSD *float64
	Frozen   *bool
	// Metadata replaces the metadata when non-nil.
	Metadata map[string]string
	// RateLimit replaces the rate limit when non-nil.
	RateLimit *RateLimit
	// RemoveRateLimit removes the rate limit (sends "rate_limit": null).
	RemoveRateLimit bool
}

// MarshalJSON sends only the fields that change.
func (p UpdateBudgetParams) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if p.LimitUSD != nil {
		m["limit_usd"] = *p.LimitUSD
	}
	if p.Frozen != nil {
		m["frozen"] = *p.Frozen
	}
	if p.Metadata != nil {
		m["metadata"] = p.Metadata
	}
	if p.RemoveRateLimit {
		m["rate_limit"] = nil
	} else if p.RateLimit != nil {
		m["rate_limit"] = p.RateLimit
	}
	return json.Marshal(m)
}

// Bool returns a pointer for UpdateBudgetParams.Frozen.
func Bool(v bool) *bool { return &v }

// BudgetList is one page of budgets.
type BudgetList struct {
	Data       []Budget `json:"data"`
	HasMore    bool     `json:"has_more"`
	NextCursor *string  `json:"next_cursor"`
}

// BudgetDeleted is the answer to DeleteBudget.
type BudgetDeleted struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

func budgetPath(id string) string { return "/v1/budgets/" + url.PathEscape(id) }

// CreateBudget creates a budget (the API answers 201); a taken id is ErrBudgetExists.
func (c *Client) CreateBudget(ctx context.Context, p CreateBudgetParams) (*Budget, error) {
	return callFor[Budget](ctx, c, http.MethodPost, "/v1/budgets", p, http.StatusCreated)
}

// GetBudget reads a budget with its spend and remaining limit in the current window
// (ErrBudgetNotFound if there is none).
func (c *Client) GetBudget(ctx context.Context, id string) (*Budget, error) {
	return callFor[Budget](ctx, c, http.MethodGet, budgetPath(id), nil, http.StatusOK)
}

// ListBudgets returns one page of budgets by id; limit 0 means the server default, cursor ""
// the first page.
func (c *Client) ListBudgets(ctx context.Context, limit int, cursor string) (*BudgetList, error) {
	return callFor[BudgetList](ctx, c, http.MethodGet, pagePath("/v1/budgets", limit, cursor), nil, http.StatusOK)
}

// UpdateBudget changes a budget's limit, frozen state, metadata or rate limit; effective for the
// next call.
func (c *Client) UpdateBudget(ctx context.Context, id string, p UpdateBudgetParams) (*Budget, error) {
	return callFor[Budget](ctx, c, http.MethodPatch, budgetPath(id), p, http.StatusOK)
}

// DeleteBudget deletes a budget. While an active key is attached it is ErrBudgetInUse.
func (c *Client) DeleteBudget(ctx context.Context, id string) (*BudgetDeleted, error) {
	var d BudgetDeleted
	if err := c.call(ctx, http.MethodDelete, budgetPath(id), nil, http.StatusOK, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// BudgetSpend reads a budget's spend in one window: "YYYY-MM-DD" (day budgets), "YYYY-MM"
// (month) or "total"; "" means the current window.
func (c *Client) BudgetSpend(ctx context.Context, id, window string) (*Budget, error) {
	path := budgetPath(id) + "/spend"
	if window != "" {
		path += "?" + url.Values{"window": {window}}.Encode()
	}
	return callFor[Budget](ctx, c, http.MethodGet, path, nil, http.StatusOK)
}

// FreezeBudget freezes a budget: every call of every attached key is refused (403
// budget_frozen) and no key can be issued against it.
func (c *Client) FreezeBudget(ctx context.Context, id string) (*Budget, error) {
	return callFor[Budget](ctx, c, http.MethodPost, budgetPath(id)+"/freeze", nil, http.StatusOK)
}

// UnfreezeBudget unfreezes a budget.
func (c *Client) UnfreezeBudget(ctx context.Context, id string) (*Budget, error) {
	return callFor[Budget](ctx, c, http.MethodPost, budgetPath(id)+"/unfreeze", nil, http.StatusOK)
}

// CapLimit says what refused a cap_exhausted call: Kind "key" (the key's daily cap) or "budget"
// (ID, Period and Window name it).
type CapLimit struct {
	Kind   string
	ID     string
	Period string
	Window string
}

// Limit returns what a cap_exhausted or rate_limited refusal was about (the body's "limit"), or
// nil when the body has none.
func (e *Error) Limit() *CapLimit {
	switch l := e.Body["limit"].(type) {
	case string:
		return &CapLimit{Kind: l}
	case map[string]any:
		str := func(k string) string { s, _ := l[k].(string); return s }
		return &CapLimit{Kind: str("kind"), ID: str("id"), Period: str("period"), Window: str("window")}
	}
	return nil
}

// BudgetID returns the budget a refusal names: the budget whose limit a cap_exhausted /
// rate_limited call hit, or the frozen budget of budget_frozen. "" otherwise.
func (e *Error) BudgetID() string {
	if b, ok := e.Body["budget"].(string); ok {
		return b
	}
	if l := e.Limit(); l != nil && l.Kind == "budget" {
		return l.ID
	}
	return ""
}
