package keyleash_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	keyleash "github.com/keyleash/keyleash-go"
)

// Minting against the real gateway: minting keys through the control API, keys minted and
// narrowed locally, then used through the proxy.

func stripeMintingKeyParams(label string) keyleash.CreateMintingKeyParams {
	return keyleash.CreateMintingKeyParams{
		Label:            label,
		Vendors:          []string{"stripe"},
		AllowedEndpoints: []string{"/v1/payment_intents", "/v1/payment_intents/*", "POST /v1/refunds"},
		MaxDailyUSDCap:   keyleash.USD(1000),
		MaxTTL:           "1h",
	}
}

func newMinter(t *testing.T, p keyleash.CreateMintingKeyParams) (*keyleash.MintingKey, *keyleash.Minter) {
	t.Helper()
	mk, err := newClient().CreateMintingKey(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	m, err := keyleash.NewMinter(mk.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return mk, m
}

func mintStripe(t *testing.T, m *keyleash.Minter, capUSD float64) *keyleash.VaultKey {
	t.Helper()
	k, err := m.Mint(keyleash.MintParams{
		Vendor:           "stripe",
		AllowedEndpoints: []string{"/v1/payment_intents", "/v1/payment_intents/*"},
		DailyUSDCap:      keyleash.USD(capUSD),
		ExpiresIn:        5 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustNarrow(t *testing.T, parent *keyleash.VaultKey, p keyleash.NarrowParams) *keyleash.VaultKey {
	t.Helper()
	k, err := keyleash.Narrow(parent.Token, p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// proxyCall calls the proxy at path (e.g. "/stripe/v1/balance") with token.
func proxyCall(t *testing.T, token, method, path string) error {
	t.Helper()
	req, _ := http.NewRequest(method, gw.ProxyURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return keyleash.ParseError(resp)
}

func wantRefusal(t *testing.T, err error, status int, sentinel *keyleash.Error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("want %s, got %v", sentinel.Code, err)
	}
	if got := asError(t, err).Status; got != status {
		t.Fatalf("%s with status %d, want %d", sentinel.Code, got, status)
	}
}

func TestMintingKeyLifecycle(t *testing.T) {
	c, ctx := newClient(), context.Background()
	p := stripeMintingKeyParams("go-mk-crud")
	p.Metadata = map[string]string{"team": "go"}
	p.AllowedBudgets = []string{"user:*"}
	mk, err := c.CreateMintingKey(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^mk_[0-9A-Za-z]{24}$`).MatchString(mk.ID) ||
		!regexp.MustCompile(`^klm_test_`+mk.ID[3:]+`_1_[A-Za-z0-9_-]{43}$`).MatchString(mk.Secret) {
		t.Fatalf("id %s secret %s", mk.ID, mk.Secret)
	}
	if mk.Label != "go-mk-crud" || mk.Mode != "test" || mk.Status != "active" || mk.Version != 1 || len(mk.Versions) != 1 ||
		mk.Versions[0].Version != 1 || mk.Versions[0].RetiresAt != nil || mk.MaxTTLSeconds != 3600 ||
		mk.MaxDailyUSDCap == nil || *mk.MaxDailyUSDCap != 1000 || mk.MaxDailyCapMicros == nil || *mk.MaxDailyCapMicros != 1_000_000_000 ||
		strings.Join(mk.Vendors, ",") != "stripe" || len(mk.AllowedEndpoints) != 3 || mk.Metadata["team"] != "go" ||
		strings.Join(mk.AllowedBudgets, ",") != "user:*" || mk.RevokedAt != nil || mk.CreatedAt.IsZero() {
		t.Fatalf("created %+v", mk)
	}
	m, err := keyleash.NewMinter(mk.Secret)
	if err != nil || m.MintingKeyID() != mk.ID || m.Version() != 1 || m.Mode() != "test" {
		t.Fatalf("minter: %v", err)
	}

	got, err := c.GetMintingKey(ctx, mk.ID)
	if err != nil || got.ID != mk.ID || got.Secret != "" || got.Label != "go-mk-crud" {
		t.Fatalf("get: %v %+v", err, got)
	}
	found := false
	for cursor, pages := "", 0; !found && pages < 100; pages++ {
		page, err := c.ListMintingKeys(ctx, 1, cursor)
		if err != nil || len(page.Data) > 1 {
			t.Fatalf("list: %v %+v", err, page)
		}
		for _, k := range page.Data {
			if k.Secret != "" {
				t.Fatal("a listed minting key carries its secret")
			}
			found = found || k.ID == mk.ID
		}
		if !page.HasMore || page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	if !found {
		t.Fatal("the minting key is not listed")
	}

	rotated, err := c.RotateMintingKey(ctx, mk.ID, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Version != 2 || rotated.Secret == mk.Secret || !strings.Contains(rotated.Secret, "_"+mk.ID[3:]+"_2_") || len(rotated.Versions) != 2 {
		t.Fatalf("rotated %+v", rotated)
	}
	for _, v := range rotated.Versions {
		if v.Version == 1 && (v.RetiresAt == nil || v.RetiresAt.Before(time.Now().Add(29*time.Minute)) || v.RetiresAt.After(time.Now().Add(31*time.Minute))) {
			t.Fatalf("version 1 retires at %v, want in 30 minutes", v.RetiresAt)
		}
	}

	revoked, err := c.RevokeMintingKey(ctx, mk.ID)
	if err != nil || revoked.Status != "revoked" || revoked.RevokedAt == nil || revoked.KeysRevoked != 0 {
		t.Fatalf("revoke: %v %+v", err, revoked)
	}
	if again, err := c.RevokeMintingKey(ctx, mk.ID); err != nil || again.Status != "revoked" {
		t.Fatalf("revoking twice must succeed: %v", err)
	}
	const unknown = "mk_000000000000000000000000"
	if _, err := c.GetMintingKey(ctx, unknown); !errors.Is(err, keyleash.ErrMintingKeyNotFound) || asError(t, err).Status != 404 {
		t.Fatalf("get unknown: %v", err)
	}
	if _, err := c.RevokeMintingKey(ctx, unknown); !errors.Is(err, keyleash.ErrMintingKeyNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	bad := stripeMintingKeyParams("go-mk-bad")
	bad.Vendors = nil
	if _, err := c.CreateMintingKey(ctx, bad); !errors.Is(err, keyleash.ErrInvalidRequest) {
		t.Fatalf("no vendors: %v", err)
	}
}

func TestMintedKeyCallsStripeThroughTheProxy(t *testing.T) {
	c := newClient()
	mk, m := newMinter(t, stripeMintingKeyParams("go-mint-call"))
	before := len(stripeRequests(t))
	ctx, err := m.MintContext(context.Background(), keyleash.MintParams{
		Vendor:           "stripe",
		AllowedEndpoints: []string{"/v1/payment_intents"},
		DailyUSDCap:      keyleash.USD(100),
		Label:            "go-minted-call",
		Metadata:         map[string]string{"run": mk.ID},
	})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := keyleash.FromContext(ctx)
	resp, err := createPaymentIntent(ctx, 2500)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("charge: %v", err)
	}
	var pi struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&pi)
	resp.Body.Close()
	seen := stripeRequests(t)
	if !strings.HasPrefix(pi.ID, "pi_") || len(seen) != before+1 || seen[len(seen)-1].Authorization != "Bearer "+gw.StripeTestSecret ||
		seen[len(seen)-1].Path != "/v1/payment_intents" {
		t.Fatalf("pi %q, stripe saw %+v", pi.ID, seen[len(seen)-1])
	}
	k, err := c.GetKey(context.Background(), key.ID)
	if err != nil {
		t.Fatal(err)
	}
	if k.Origin != "minted" || k.MintingKeyID != mk.ID || k.ParentID != "" || k.Status != "active" || k.SpendTodayUSD != 25 ||
		k.Label != "go-minted-call" || k.Metadata["run"] != mk.ID || k.DailyUSDCap == nil || *k.DailyUSDCap != 100 || k.RequestCount != 1 {
		t.Fatalf("key %+v", k)
	}
	l, err := c.ListKeys(context.Background(), keyleash.ListParams{LabelPrefix: "go-minted-call", Metadata: map[string]string{"run": mk.ID}})
	if err != nil || len(l.Data) != 1 || l.Data[0].ID != key.ID || l.Data[0].Origin != "minted" {
		t.Fatalf("list: %v %+v", err, l)
	}
}

func TestMintedKeyGetsNoMoreThanItsMintingKeyAllows(t *testing.T) {
	p := stripeMintingKeyParams("go-mint-policy")
	p.MaxDailyUSDCap = keyleash.USD(30)
	_, m := newMinter(t, p)

	// Asking for a higher cap, or none, gets the minting key's maximum.
	for _, capUSD := range []*float64{keyleash.USD(500), nil} {
		k, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/payment_intents"}, DailyUSDCap: capUSD})
		if err != nil {
			t.Fatal(err)
		}
		if err := chargeWith(k, 2500); err != nil {
			t.Fatal(err)
		}
		wantRefusal(t, chargeWith(k, 1000), 429, keyleash.ErrCapExhausted)
		if got, err := newClient().GetKey(context.Background(), k.ID); err != nil || got.DailyUSDCap == nil || *got.DailyUSDCap != 30 || got.SpendTodayUSD != 25 {
			t.Fatalf("%v %+v", err, got)
		}
	}

	// A vendor the minting key does not allow makes the key invalid.
	k, err := m.Mint(keyleash.MintParams{Vendor: "twilio", AllowedEndpoints: []string{"/v1/payment_intents"}})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, proxyCall(t, k.Token, "POST", "/stripe/v1/payment_intents"), 401, keyleash.ErrInvalidKey)
}

func TestNarrowedKeyForASubAgent(t *testing.T) {
	c, ctx := newClient(), context.Background()
	_, m := newMinter(t, stripeMintingKeyParams("go-mint-narrow"))
	parent := mintStripe(t, m, 100)
	if err := chargeWith(parent, 1000); err != nil {
		t.Fatal(err)
	}
	child := mustNarrow(t, parent, keyleash.NarrowParams{AllowedEndpoints: []string{"POST /v1/payment_intents"}, DailyUSDCap: keyleash.USD(30), Label: "go-sub-agent"})
	before := len(stripeRequests(t))

	if err := chargeWith(child, 2000); err != nil {
		t.Fatal(err)
	}
	// The child's own cap: $20 + $20 > $30, although the parent has $70 left.
	err := chargeWith(child, 2000)
	wantRefusal(t, err, 429, keyleash.ErrCapExhausted)
	// The child's endpoints: the parent may read a payment intent, the child may not.
	wantRefusal(t, proxyCall(t, child.Token, "GET", "/stripe/v1/payment_intents/pi_123"), 403, keyleash.ErrEndpointNotAllowed)
	wantRefusal(t, proxyCall(t, child.Token, "GET", "/stripe/v1/payment_intents"), 403, keyleash.ErrEndpointNotAllowed)
	if n := len(stripeRequests(t)); n != before+1 {
		t.Fatalf("stripe saw %d calls of the child, want 1", n-before)
	}

	ck, err := c.GetKey(ctx, child.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Origin != "minted" || ck.ParentID != parent.ID || ck.SpendTodayUSD != 20 || ck.DailyUSDCap == nil || *ck.DailyUSDCap != 30 || ck.Label != "/go-sub-agent" || child.Label != ck.Label {
		t.Fatalf("child %+v", ck)
	}
	// The child's spend counts against the parent too.
	if pk, err := c.GetKey(ctx, parent.ID); err != nil || pk.SpendTodayUSD != 30 || pk.ParentID != "" {
		t.Fatalf("parent: %v %+v", err, pk)
	}
}

func TestNarrowedLabelsAreTheGatewaysLabels(t *testing.T) {
	c := newClient()
	_, m := newMinter(t, stripeMintingKeyParams("go-mint-labels"))
	root, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/payment_intents"}, Label: "go-run7"})
	if err != nil {
		t.Fatal(err)
	}
	tool := mustNarrow(t, root, keyleash.NarrowParams{Label: "refund-tool"})
	kept := mustNarrow(t, tool, keyleash.NarrowParams{DailyUSDCap: keyleash.USD(1)})
	step := mustNarrow(t, kept, keyleash.NarrowParams{Label: "step 2"})
	bare := mustNarrow(t, mintStripe(t, m, 10), keyleash.NarrowParams{Label: "sub"})
	want := []string{"go-run7", "go-run7/refund-tool", "go-run7/refund-tool", "go-run7/refund-tool/step 2", "/sub"}
	for i, k := range []*keyleash.VaultKey{root, tool, kept, step, bare} {
		if k.Label != want[i] {
			t.Fatalf("key %d: SDK label %q, want %q", i, k.Label, want[i])
		}
		if err := chargeWith(k, 1); err != nil {
			t.Fatal(err)
		}
		got, err := c.GetKey(context.Background(), k.ID)
		if err != nil || got.Label != k.Label {
			t.Fatalf("key %d: gateway label %q, SDK %q (%v)", i, got.Label, k.Label, err)
		}
	}
}

func TestNarrowedSiblingsShareTheirParentsCap(t *testing.T) {
	_, m := newMinter(t, stripeMintingKeyParams("go-mint-siblings"))
	parent := mintStripe(t, m, 50)
	a := mustNarrow(t, parent, keyleash.NarrowParams{DailyUSDCap: keyleash.USD(40)})
	b := mustNarrow(t, parent, keyleash.NarrowParams{DailyUSDCap: keyleash.USD(40)})
	if err := chargeWith(a, 3000); err != nil {
		t.Fatal(err)
	}
	// b's own cap has room for $30, the parent's has only $20.
	wantRefusal(t, chargeWith(b, 3000), 429, keyleash.ErrCapExhausted)
	if err := chargeWith(b, 2000); err != nil {
		t.Fatal(err)
	}
	if pk, err := newClient().GetKey(context.Background(), parent.ID); err != nil || pk.SpendTodayUSD != 50 {
		t.Fatalf("parent: %v %+v", err, pk)
	}
}

func TestRevokingAMintedKeyBeforeItsFirstUse(t *testing.T) {
	c, ctx := newClient(), context.Background()
	_, m := newMinter(t, stripeMintingKeyParams("go-mint-revoke"))
	k := mintStripe(t, m, 10)
	r, err := c.RevokeKey(ctx, k.ID)
	if err != nil || r.Status != "revoked" {
		t.Fatalf("revoke: %v %+v", err, r)
	}
	if _, err := c.RevokeKey(ctx, k.ID); err != nil {
		t.Fatalf("revoking twice must succeed: %v", err)
	}
	before := len(stripeRequests(t))
	wantRefusal(t, chargeWith(k, 100), 401, keyleash.ErrKeyRevoked)
	if len(stripeRequests(t)) != before {
		t.Fatal("a revoked minted key reached Stripe")
	}

	// Revoking a key stops every key narrowed from it, used or not.
	p := mintStripe(t, m, 10)
	used := mustNarrow(t, p, keyleash.NarrowParams{Label: "used"})
	unused := mustNarrow(t, p, keyleash.NarrowParams{Label: "unused"})
	if err := chargeWith(used, 100); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, chargeWith(used, 100), 401, keyleash.ErrKeyRevoked)
	wantRefusal(t, chargeWith(unused, 100), 401, keyleash.ErrKeyRevoked)
}

func TestRevokingTheMintingKeyRefusesItsKeys(t *testing.T) {
	c, ctx := newClient(), context.Background()
	mk, m := newMinter(t, stripeMintingKeyParams("go-mint-revoke-mk"))
	used := mintStripe(t, m, 10)
	if err := chargeWith(used, 100); err != nil {
		t.Fatal(err)
	}
	unused := mintStripe(t, m, 10)
	child := mustNarrow(t, used, keyleash.NarrowParams{Label: "child"})

	res, err := c.RevokeMintingKey(ctx, mk.ID)
	if err != nil || res.Status != "revoked" || res.KeysRevoked != 1 {
		t.Fatalf("revoke: %v %+v", err, res)
	}
	before := len(stripeRequests(t))
	for _, k := range []*keyleash.VaultKey{used, unused, child, mintStripe(t, m, 10)} {
		wantRefusal(t, chargeWith(k, 100), 401, keyleash.ErrKeyRevoked)
	}
	if len(stripeRequests(t)) != before {
		t.Fatal("a key of a revoked minting key reached Stripe")
	}
	mustStatus(t, c, used.ID, "revoked")
}

func TestTamperedMintedTokensAreInvalid(t *testing.T) {
	_, m := newMinter(t, stripeMintingKeyParams("go-mint-tamper"))
	other := mintStripe(t, m, 10)
	root := mintStripe(t, m, 10)
	a := mustNarrow(t, root, keyleash.NarrowParams{Label: "a"})
	b := mustNarrow(t, a, keyleash.NarrowParams{Label: "b"})
	parts := func(tok string) []string { return strings.Split(tok, ".") } // head, blocks…, sig
	join := func(p ...string) string { return strings.Join(p, ".") }
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	bp := parts(b.Token)
	cases := map[string]string{
		"a character flipped in block 0":  flip(b.Token, len(bp[0])+1+len(bp[1])/2),
		"a character flipped in block 2":  flip(b.Token, len(b.Token)-44-len(bp[3])/2),
		"a character flipped in the sig":  flip(b.Token, len(b.Token)-10),
		"the last block dropped":          join(bp[0], bp[1], bp[2], bp[4]),
		"blocks 1 and 2 swapped":          join(bp[0], bp[1], bp[3], bp[2], bp[4]),
		"block 0 of another key":          join(bp[0], parts(other.Token)[1], bp[2], bp[3], bp[4]),
		"the root's block, a child's sig": join(bp[0], bp[1], parts(a.Token)[3]),
	}
	before := len(stripeRequests(t))
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if tok == b.Token {
				t.Fatal("the token did not change")
			}
			wantRefusal(t, chargeWith(&keyleash.VaultKey{Token: tok, Vendor: "stripe"}, 100), 401, keyleash.ErrInvalidKey)
		})
	}
	if len(stripeRequests(t)) != before {
		t.Fatal("a tampered token reached Stripe")
	}
	for _, k := range []*keyleash.VaultKey{b, a, root} {
		if err := chargeWith(k, 100); err != nil {
			t.Fatalf("the genuine token %s: %v", k.Label, err)
		}
	}
}

func TestExpiredMintedKeys(t *testing.T) {
	p := stripeMintingKeyParams("go-mint-expired")
	p.MaxTTL = "5m"
	_, m := newMinter(t, p)
	tenMinutesAgo := time.Now().Add(-10 * time.Minute)
	m.SetClock(func() time.Time { return tenMinutesAgo })
	mint := func(ttl time.Duration) *keyleash.VaultKey {
		k, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/payment_intents"}, ExpiresIn: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	// Past its own exp.
	k := mint(time.Minute)
	wantRefusal(t, chargeWith(k, 100), 401, keyleash.ErrKeyExpired)
	// Narrowing cannot bring it back.
	wantRefusal(t, chargeWith(mustNarrow(t, k, keyleash.NarrowParams{ExpiresIn: time.Hour}), 100), 401, keyleash.ErrKeyExpired)
	// Within its own exp, but past iat + the minting key's max TTL.
	wantRefusal(t, chargeWith(mint(time.Hour), 100), 401, keyleash.ErrKeyExpired)

	// Minted more than a minute in the future: the minter's clock is wrong, the key is refused.
	m.SetClock(func() time.Time { return time.Now().Add(10 * time.Minute) })
	wantRefusal(t, chargeWith(mint(time.Minute), 100), 401, keyleash.ErrInvalidKey)
}

func TestRotatedMintingKeySecrets(t *testing.T) {
	c, ctx := newClient(), context.Background()
	mk, m1 := newMinter(t, stripeMintingKeyParams("go-mint-rotate"))
	rotated, err := c.RotateMintingKey(ctx, mk.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := keyleash.NewMinter(rotated.Secret)
	if err != nil || m2.Version() != 2 || m2.MintingKeyID() != mk.ID {
		t.Fatalf("minter v2: %v", err)
	}
	// During the grace period both secrets mint working keys.
	old := mintStripe(t, m1, 10)
	if err := chargeWith(old, 100); err != nil {
		t.Fatalf("old secret in its grace period: %v", err)
	}
	k2 := mintStripe(t, m2, 10)
	if err := chargeWith(k2, 100); err != nil {
		t.Fatalf("new secret: %v", err)
	}

	// When a grace period ends, the version's keys are refused, including ones in use.
	rotated, err = c.RotateMintingKey(ctx, mk.ID, time.Second)
	if err != nil || rotated.Version != 3 {
		t.Fatalf("second rotation: %v %+v", err, rotated)
	}
	m3, _ := keyleash.NewMinter(rotated.Secret)
	var retires *time.Time
	for _, v := range rotated.Versions {
		if v.Version == 2 {
			retires = v.RetiresAt
		}
	}
	if retires == nil {
		t.Fatalf("version 2 has no end: %+v", rotated.Versions)
	}
	time.Sleep(time.Until(*retires) + 300*time.Millisecond)
	wantRefusal(t, chargeWith(k2, 100), 401, keyleash.ErrKeyExpired)
	wantRefusal(t, chargeWith(mintStripe(t, m2, 10), 100), 401, keyleash.ErrKeyExpired)
	if err := chargeWith(mintStripe(t, m3, 10), 100); err != nil {
		t.Fatalf("newest secret: %v", err)
	}
}

func TestMintedKeysCountAgainstBudgets(t *testing.T) {
	c, ctx := newClient(), context.Background()
	p := stripeMintingKeyParams("go-mint-budgets")
	p.AllowedBudgets = []string{"go-mint:*"}
	mk, m := newMinter(t, p)
	budget := "go-mint:" + mk.ID[3:] // one per run: budgets outlive the test
	if _, err := c.CreateBudget(ctx, keyleash.CreateBudgetParams{ID: budget, LimitUSD: 30, Period: "day"}); err != nil {
		t.Fatal(err)
	}
	mint := func(budget string) *keyleash.VaultKey {
		k, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/payment_intents"}, DailyUSDCap: keyleash.USD(100), Budgets: []string{budget}})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k := mint(budget)
	if err := chargeWith(k, 2500); err != nil {
		t.Fatal(err)
	}
	err := chargeWith(k, 1000)
	wantRefusal(t, err, 429, keyleash.ErrCapExhausted)
	if id := asError(t, err).BudgetID(); id != budget {
		t.Fatalf("refused by %q, want the budget", id)
	}
	// A budget outside allowed_budgets makes the key invalid.
	wantRefusal(t, chargeWith(mint("team:other"), 100), 401, keyleash.ErrInvalidKey)
}

// ---- middleware in minting mode ------------------------------------------------------------

func mintingOpts(m *keyleash.Minter, capUSD float64) keyleash.MiddlewareOptions {
	opts := stripeOpts(capUSD)
	opts.Minter = m
	return opts
}

func TestMiddlewareMintsKeysWithoutTheControlAPI(t *testing.T) {
	mk, m := newMinter(t, stripeMintingKeyParams("go-mw-mint"))
	// The control API is unreachable: minting needs none of it.
	down := keyleash.NewClient("http://127.0.0.1:1", gw.ProxyURL, "")
	opts := mintingOpts(m, 100)
	opts.Label = func(r *http.Request) string { return "go-mw-mint " + r.URL.Path }
	srv := httptest.NewServer(app(down, opts))
	defer srv.Close()
	var a, b result
	if s := getJSON(t, "POST", srv.URL+"/charge", &a); s != 200 {
		t.Fatalf("status %d", s)
	}
	if s := getJSON(t, "POST", srv.URL+"/charge", &b); s != 200 {
		t.Fatalf("status %d", s)
	}
	if !strings.HasPrefix(a.KeyID, "mkey_"+mk.ID[3:]+"_") || !strings.HasPrefix(a.PI, "pi_") || a.KeyID == b.KeyID {
		t.Fatalf("%+v %+v", a, b)
	}
	// Left to expire by default: no revoke call either.
	k := mustStatus(t, newClient(), a.KeyID, "active")
	if k.Origin != "minted" || k.MintingKeyID != mk.ID || k.SpendTodayUSD != 50 || k.Label != "go-mw-mint /charge" {
		t.Fatalf("%+v", k)
	}
	var out map[string]bool
	getJSON(t, "GET", srv.URL+"/health", &out)
	if out["has_key"] {
		t.Fatal("health got a key")
	}
}

func TestMiddlewareMintedCapExhaustedBecomes402(t *testing.T) {
	_, m := newMinter(t, stripeMintingKeyParams("go-mw-mint-cap"))
	srv := httptest.NewServer(app(newClient(), mintingOpts(m, 10)))
	defer srv.Close()
	before := len(stripeRequests(t))
	var out result
	if s := getJSON(t, "POST", srv.URL+"/charge", &out); s != 402 || !strings.HasPrefix(out.KeyID, "mkey_") {
		t.Fatalf("status %d %+v", s, out)
	}
	if len(stripeRequests(t)) != before {
		t.Fatal("reached Stripe")
	}
}

func TestMiddlewareRevokeMinted(t *testing.T) {
	c := newClient()
	_, m := newMinter(t, stripeMintingKeyParams("go-mw-mint-revoke"))
	opts := mintingOpts(m, 100)
	opts.RevokeMinted = true
	var held *keyleash.VaultKey
	srv := httptest.NewServer(c.Middleware(opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held, _ = keyleash.FromContext(r.Context())
		if r.URL.Path == "/charge" {
			resp, err := createPaymentIntent(r.Context(), 5000)
			if err != nil {
				http.Error(w, err.Error(), 502)
				return
			}
			resp.Body.Close()
		}
		_ = json.NewEncoder(w).Encode(result{KeyID: held.ID})
	})))
	defer srv.Close()
	var out result
	if s := getJSON(t, "POST", srv.URL+"/charge", &out); s != 200 {
		t.Fatalf("status %d", s)
	}
	mustStatus(t, c, out.KeyID, "revoked")
	// Revoked also when the handler never used its key: it is refused from its first call.
	held = nil
	if s := getJSON(t, "POST", srv.URL+"/hold", nil); s != 200 || held == nil || held.ID == out.KeyID {
		t.Fatalf("status %d", s)
	}
	wantRefusal(t, chargeWith(held, 100), 401, keyleash.ErrKeyRevoked)
}

// A handler that hands a sub-agent a narrower key: its lower cap gives the app's 402.
func TestMiddlewareSubAgentWithANarrowerKey(t *testing.T) {
	c := newClient()
	_, m := newMinter(t, stripeMintingKeyParams("go-mw-sub-agent"))
	mux := http.NewServeMux()
	mux.HandleFunc("/delegate", func(w http.ResponseWriter, r *http.Request) {
		sub, child, err := keyleash.NarrowContext(r.Context(), "stripe", keyleash.NarrowParams{
			AllowedEndpoints: []string{"POST /v1/payment_intents"},
			DailyUSDCap:      keyleash.USD(30),
			Label:            "go-sub-agent-tool",
		})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		resp, err := createPaymentIntent(sub, 5000)
		if keyleash.IsCapExhausted(err) {
			w.WriteHeader(http.StatusPaymentRequired)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "spend limit reached for this tool", "key_id": child.ID, "parent_id": child.ParentID})
			return
		}
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		resp.Body.Close()
		_ = json.NewEncoder(w).Encode(map[string]string{"key_id": child.ID})
	})
	srv := httptest.NewServer(c.Middleware(mintingOpts(m, 100))(mux))
	defer srv.Close()
	before := len(stripeRequests(t))
	var out map[string]string
	if s := getJSON(t, "POST", srv.URL+"/delegate", &out); s != 402 || !strings.HasPrefix(out["parent_id"], "mkey_") || out["key_id"] == out["parent_id"] {
		t.Fatalf("status %d %v", s, out)
	}
	if len(stripeRequests(t)) != before {
		t.Fatal("the sub-agent's capped call reached Stripe")
	}
}
