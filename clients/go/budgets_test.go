package keyleash_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	keyleash "github.com/keyleash/keyleash-go"
)

func budgetKeyParams(label string, budgets ...string) keyleash.IssueParams {
	p := stripeParams(80)
	p.AllowedEndpoints = []string{"/v1/payment_intents"}
	p.Label = label
	p.Budgets = budgets
	return p
}

// chargeWith makes one $amount/100 charge through the proxy with key.
func chargeWith(key *keyleash.VaultKey, amount int) error {
	resp, err := createPaymentIntent(keyleash.WithVaultKey(context.Background(), "stripe", key), amount)
	if resp != nil {
		resp.Body.Close()
	}
	return err
}

func asError(t *testing.T, err error) *keyleash.Error {
	t.Helper()
	var kerr *keyleash.Error
	if !errors.As(err, &kerr) {
		t.Fatalf("want a *keyleash.Error, got %#v", err)
	}
	return kerr
}

func TestBudgetCRUD(t *testing.T) {
	c, ctx := newClient(), context.Background()
	b, err := c.CreateBudget(ctx, keyleash.CreateBudgetParams{ID: "team:go-crud", LimitUSD: 500, Period: "month", Metadata: map[string]string{"team": "crud"}, RateLimit: &keyleash.RateLimit{Requests: 20, Per: "second"}})
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != "team:go-crud" || b.LimitUSD != 500 || b.Period != "month" || b.Frozen || b.SpendUSD != 0 || b.RemainingUSD != 500 ||
		b.RateLimit == nil || *b.RateLimit != (keyleash.RateLimit{Requests: 20, Per: "second"}) || !regexp.MustCompile(`^\d{4}-\d{2}$`).MatchString(b.Window) {
		t.Fatalf("created %+v", b)
	}
	if _, err := c.CreateBudget(ctx, keyleash.CreateBudgetParams{ID: "team:go-crud", LimitUSD: 1, Period: "day"}); !errors.Is(err, keyleash.ErrBudgetExists) || asError(t, err).Status != 409 {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := c.CreateBudget(ctx, keyleash.CreateBudgetParams{ID: "bad id", LimitUSD: 1, Period: "day"}); !errors.Is(err, keyleash.ErrInvalidRequest) {
		t.Fatalf("bad id: %v", err)
	}
	if got, err := c.GetBudget(ctx, "team:go-crud"); err != nil || got.Metadata["team"] != "crud" {
		t.Fatalf("get: %v %+v", err, got)
	}
	if _, err := c.GetBudget(ctx, "team:go-nope"); !errors.Is(err, keyleash.ErrBudgetNotFound) || asError(t, err).Status != 404 {
		t.Fatalf("missing: %v", err)
	}
	if _, err := c.DeleteBudget(ctx, "team:go-nope"); !errors.Is(err, keyleash.ErrBudgetNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	up, err := c.UpdateBudget(ctx, "team:go-crud", keyleash.UpdateBudgetParams{LimitUSD: keyleash.USD(250.5), RemoveRateLimit: true, Metadata: map[string]string{"team": "crud2"}})
	if err != nil || up.LimitUSD != 250.5 || up.RateLimit != nil || up.Metadata["team"] != "crud2" {
		t.Fatalf("update: %v %+v", err, up)
	}
	if up, err := c.UpdateBudget(ctx, "team:go-crud", keyleash.UpdateBudgetParams{Frozen: keyleash.Bool(true)}); err != nil || !up.Frozen || up.LimitUSD != 250.5 {
		t.Fatalf("update frozen only: %v %+v", err, up)
	}
	for _, id := range []string{"go-page:0", "go-page:1", "go-page:2"} {
		if _, err := c.CreateBudget(ctx, keyleash.CreateBudgetParams{ID: id, LimitUSD: 1, Period: "total"}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.ListBudgets(ctx, 2, "")
	if err != nil || len(page.Data) != 2 || !page.HasMore || page.NextCursor == nil {
		t.Fatalf("page: %v %+v", err, page)
	}
	seen := map[string]bool{}
	for cursor := ""; ; {
		p, err := c.ListBudgets(ctx, 2, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range p.Data {
			seen[b.ID] = true
		}
		if !p.HasMore {
			break
		}
		cursor = *p.NextCursor
	}
	for _, id := range []string{"team:go-crud", "go-page:0", "go-page:1", "go-page:2"} {
		if !seen[id] {
			t.Fatalf("%s not listed: %v", id, seen)
		}
	}
	if d, err := c.DeleteBudget(ctx, "go-page:0"); err != nil || !d.Deleted || d.ID != "go-page:0" {
		t.Fatalf("delete: %v %+v", err, d)
	}
}

// A user budget shared by two keys: the budget (not a key's cap) refuses, its spend is readable,
// freezing blocks issuance and calls, the kill switch by budget revokes both, then it can go.
func TestUserBudgetSharedByTwoKeys(t *testing.T) {
	c, ctx := newClient(), context.Background()
	const id = "user:go-u42"
	if _, err := c.CreateBudget(ctx, keyleash.CreateBudgetParams{ID: id, LimitUSD: 100, Period: "day"}); err != nil {
		t.Fatal(err)
	}
	a, err := c.IssueKey(ctx, budgetKeyParams("go-budget-a", id))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.IssueKey(ctx, budgetKeyParams("go-budget-b", id))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Budgets) != 1 || a.Budgets[0] != id {
		t.Fatalf("a.Budgets = %v", a.Budgets)
	}
	if got, _ := c.GetKey(ctx, b.ID); got == nil || len(got.Budgets) != 1 || got.Budgets[0] != id {
		t.Fatalf("b: %+v", got)
	}

	if err := chargeWith(a, 6000); err != nil { // $60 of a's $80, of the budget's $100
		t.Fatal(err)
	}
	if err := chargeWith(b, 3000); err != nil { // $30 of b's $80; the budget is at $90
		t.Fatal(err)
	}
	before := len(stripeRequests(t))
	// $20 more fits b's own cap ($50 of $80) but not the budget ($110 of $100).
	err = chargeWith(b, 2000)
	if !keyleash.IsCapExhausted(err) {
		t.Fatalf("want cap_exhausted, got %v", err)
	}
	kerr := asError(t, err)
	if l := kerr.Limit(); kerr.Status != 429 || l == nil || l.Kind != "budget" || l.ID != id || l.Period != "day" || kerr.BudgetID() != id || kerr.Body["remaining_usd"] != 10.0 {
		t.Fatalf("refusal %+v limit %+v", kerr, kerr.Limit())
	}
	if n := len(stripeRequests(t)); n != before {
		t.Fatalf("%d calls reached Stripe", n-before)
	}
	if k := mustStatus(t, c, b.ID, "active"); k.SpendTodayUSD != 30 {
		t.Fatalf("b spent %v", k.SpendTodayUSD)
	}

	spent, err := c.GetBudget(ctx, id)
	if err != nil || spent.SpendUSD != 90 || spent.RemainingUSD != 10 || !regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`).MatchString(spent.Window) {
		t.Fatalf("budget: %v %+v", err, spent)
	}
	if w, err := c.BudgetSpend(ctx, id, spent.Window); err != nil || w.SpendUSD != 90 || w.Window != spent.Window {
		t.Fatalf("spend today: %v %+v", err, w)
	}
	if w, err := c.BudgetSpend(ctx, id, "2020-01-01"); err != nil || w.SpendUSD != 0 || w.Window != "2020-01-01" {
		t.Fatalf("spend 2020-01-01: %v %+v", err, w)
	}
	if w, err := c.BudgetSpend(ctx, id, ""); err != nil || w.SpendUSD != 90 {
		t.Fatalf("spend current: %v %+v", err, w)
	}
	if _, err := c.BudgetSpend(ctx, id, "2020-01"); !errors.Is(err, keyleash.ErrInvalidRequest) || asError(t, err).Param != "window" {
		t.Fatalf("bad window: %v", err)
	}

	// Frozen: no key can be issued against it, and the attached keys' calls are refused.
	if f, err := c.FreezeBudget(ctx, id); err != nil || !f.Frozen {
		t.Fatalf("freeze: %v %+v", err, f)
	}
	_, err = c.IssueKey(ctx, budgetKeyParams("go-budget-frozen", id))
	if !errors.Is(err, keyleash.ErrBudgetFrozen) || asError(t, err).Status != 403 || asError(t, err).BudgetID() != id {
		t.Fatalf("issue against a frozen budget: %v", err)
	}
	if err := chargeWith(a, 100); !errors.Is(err, keyleash.ErrBudgetFrozen) {
		t.Fatalf("call with a frozen budget: %v", err)
	}
	if f, err := c.UnfreezeBudget(ctx, id); err != nil || f.Frozen {
		t.Fatalf("unfreeze: %v %+v", err, f)
	}
	if err := chargeWith(a, 500); err != nil {
		t.Fatalf("after unfreeze: %v", err)
	}

	// While keys are attached it cannot be deleted; the kill switch by budget revokes both.
	if _, err := c.DeleteBudget(ctx, id); !errors.Is(err, keyleash.ErrBudgetInUse) || asError(t, err).Status != 409 {
		t.Fatalf("delete in use: %v", err)
	}
	other, err := c.IssueKey(ctx, budgetKeyParams("go-budget-other"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.RevokeKeys(ctx, keyleash.RevokeFilter{Budget: id, DryRun: true}); err != nil || r.Matched != 2 || r.Revoked != 0 {
		t.Fatalf("dry run: %v %+v", err, r)
	}
	if r, err := c.RevokeKeys(ctx, keyleash.RevokeFilter{Budget: id}); err != nil || r.Matched != 2 || r.Revoked != 2 {
		t.Fatalf("kill switch: %v %+v", err, r)
	}
	mustStatus(t, c, a.ID, "revoked")
	mustStatus(t, c, b.ID, "revoked")
	mustStatus(t, c, other.ID, "active")
	if err := chargeWith(a, 100); !errors.Is(err, keyleash.ErrKeyRevoked) {
		t.Fatalf("revoked key: %v", err)
	}

	if d, err := c.DeleteBudget(ctx, id); err != nil || !d.Deleted || d.ID != id {
		t.Fatalf("delete: %v %+v", err, d)
	}
	if _, err := c.GetBudget(ctx, id); !errors.Is(err, keyleash.ErrBudgetNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestMiddlewareBudgetsPerRequest(t *testing.T) {
	c, ctx := newClient(), context.Background()
	if _, err := c.CreateBudget(ctx, keyleash.CreateBudgetParams{ID: "user:go-mw", LimitUSD: 1, Period: "total"}); err != nil {
		t.Fatal(err)
	}
	var keyID string
	var chargeErr error
	h := c.Middleware(keyleash.MiddlewareOptions{
		Keys:    []keyleash.KeySpec{{IssueParams: stripeParams(100)}},
		Budgets: func(r *http.Request) []string { return []string{"user:" + r.Header.Get("X-User")} },
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, _ := keyleash.FromContext(r.Context())
		keyID = k.ID
		if got, err := c.GetKey(r.Context(), k.ID); err != nil || len(got.Budgets) != 1 || got.Budgets[0] != "user:go-mw" {
			t.Errorf("key budgets: %v %+v", err, got)
		}
		_, chargeErr = createPaymentIntent(r.Context(), 5000)
	}))
	req := httptest.NewRequest(http.MethodPost, "/charge", nil)
	req.Header.Set("X-User", "go-mw")
	h.ServeHTTP(httptest.NewRecorder(), req)
	// The $1 budget refuses the $50 charge; the key's $100 cap would not.
	if kerr := asError(t, chargeErr); kerr.Code != "cap_exhausted" || kerr.BudgetID() != "user:go-mw" {
		t.Fatalf("charge: %v", chargeErr)
	}
	mustStatus(t, c, keyID, "revoked")
	if _, err := c.DeleteBudget(ctx, "user:go-mw"); err != nil {
		t.Fatal(err)
	}
}
