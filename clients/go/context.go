package keyleash

import (
	"context"
	"errors"
	"time"
)

// The vault keys of a request (or task) travel in its context.Context under an unexported key.
type ctxKey struct{}

type keySet struct {
	names []string
	keys  map[string]*VaultKey
}

// WithVaultKey returns a context carrying key under name (a vendor, or your own name for a
// second key of one vendor). Keys already in ctx stay.
func WithVaultKey(ctx context.Context, name string, key *VaultKey) context.Context {
	old, _ := ctx.Value(ctxKey{}).(*keySet)
	ks := &keySet{keys: map[string]*VaultKey{}}
	if old != nil {
		ks.names = append(ks.names, old.names...)
		for n, k := range old.keys {
			ks.keys[n] = k
		}
	}
	if _, dup := ks.keys[name]; !dup {
		ks.names = append(ks.names, name)
	}
	ks.keys[name] = key
	return context.WithValue(ctx, ctxKey{}, ks)
}

// FromContext returns the context's vault key: the first one put there.
func FromContext(ctx context.Context) (*VaultKey, bool) {
	ks, _ := ctx.Value(ctxKey{}).(*keySet)
	if ks == nil || len(ks.names) == 0 {
		return nil, false
	}
	return ks.keys[ks.names[0]], true
}

// FromContextFor returns the key stored under name or, failing that, the first key for that
// vendor.
func FromContextFor(ctx context.Context, name string) (*VaultKey, bool) {
	_, k, ok := lookupKey(ctx, name)
	return k, ok
}

// lookupKey finds a key as FromContextFor does, with the name it is stored under.
func lookupKey(ctx context.Context, name string) (string, *VaultKey, bool) {
	ks, _ := ctx.Value(ctxKey{}).(*keySet)
	if ks == nil {
		return "", nil, false
	}
	if k, ok := ks.keys[name]; ok {
		return name, k, true
	}
	for _, n := range ks.names {
		if ks.keys[n].Vendor == name {
			return n, ks.keys[n], true
		}
	}
	return "", nil, false
}

// AllFromContext returns every key in ctx by name.
func AllFromContext(ctx context.Context) map[string]*VaultKey {
	out := map[string]*VaultKey{}
	if ks, _ := ctx.Value(ctxKey{}).(*keySet); ks != nil {
		for n, k := range ks.keys {
			out[n] = k
		}
	}
	return out
}

// Issue issues a key and returns a context carrying it (under its vendor's name):
//
//	ctx, err := client.Issue(ctx, keyleash.IssueParams{...})
//	if err != nil { ... }
//	key, _ := keyleash.FromContext(ctx)
//	defer client.Revoke(context.Background(), key.ID)
func (c *Client) Issue(ctx context.Context, p IssueParams) (context.Context, error) {
	return c.IssueNamed(ctx, p.Vendor, p)
}

// IssueNamed is Issue with the name to store the key under (for several keys of one vendor).
func (c *Client) IssueNamed(ctx context.Context, name string, p IssueParams) (context.Context, error) {
	k, err := c.IssueKey(ctx, p)
	if err != nil {
		return ctx, err
	}
	return WithVaultKey(ctx, name, k), nil
}

// NarrowContext narrows the context's key stored under name ("" for the first key) for a
// sub-call, and returns a context carrying the narrower key under the same name. ctx itself is
// unchanged, so the caller keeps its wider key.
func NarrowContext(ctx context.Context, name string, p NarrowParams) (context.Context, *VaultKey, error) {
	var stored string
	var parent *VaultKey
	ok := false
	if name != "" {
		stored, parent, ok = lookupKey(ctx, name)
	} else if ks, _ := ctx.Value(ctxKey{}).(*keySet); ks != nil && len(ks.names) > 0 {
		stored, parent, ok = ks.names[0], ks.keys[ks.names[0]], true
	}
	if !ok {
		return ctx, nil, ErrNoVaultKey
	}
	child, err := Narrow(parent.Token, p)
	if err != nil {
		return ctx, nil, err
	}
	return WithVaultKey(ctx, stored, child), child, nil
}

// MintContext mints a key and returns a context carrying it under its vendor's name (see
// Client.Issue for the issuing equivalent).
func (m *Minter) MintContext(ctx context.Context, p MintParams) (context.Context, error) {
	return m.MintContextNamed(ctx, p.Vendor, p)
}

// MintContextNamed is MintContext with the name to store the key under.
func (m *Minter) MintContextNamed(ctx context.Context, name string, p MintParams) (context.Context, error) {
	k, err := m.Mint(p)
	if err != nil {
		return ctx, err
	}
	return WithVaultKey(ctx, name, k), nil
}

// Revoke revokes a key for cleanup code: an id keyleash does not know counts as done (nil).
func (c *Client) Revoke(ctx context.Context, id string) error {
	_, err := c.RevokeKey(ctx, id)
	if errors.Is(err, ErrKeyNotFound) {
		return nil
	}
	return err
}

// RevokeAll revokes every key in ctx (e.g. `defer client.RevokeAll(ctx)` after Issue),
// returning the first error.
func (c *Client) RevokeAll(ctx context.Context) error {
	var first error
	for _, k := range AllFromContext(ctx) {
		if err := c.Revoke(detached(ctx), k.ID); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// DefaultClient is configured from KEYLEASH_API_URL, KEYLEASH_PROXY_URL, KEYLEASH_ADMIN_TOKEN.
var DefaultClient = NewClient("", "", "")

// Issue issues a key with DefaultClient and returns a context carrying it.
func Issue(ctx context.Context, p IssueParams) (context.Context, error) {
	return DefaultClient.Issue(ctx, p)
}

// Revoke revokes a key with DefaultClient; an unknown id is not an error.
func Revoke(ctx context.Context, id string) error { return DefaultClient.Revoke(ctx, id) }

// detached keeps ctx's values but not its cancellation (context.WithoutCancel is Go 1.21+):
// cleanup must run even when the request's context is already cancelled.
func detached(ctx context.Context) context.Context { return detachedCtx{ctx} }

type detachedCtx struct{ parent context.Context }

func (d detachedCtx) Deadline() (deadline time.Time, ok bool) { return time.Time{}, false }
func (d detachedCtx) Done() <-chan struct{}                   { return nil }
func (d detachedCtx) Err() error                              { return nil }
func (d detachedCtx) Value(key any) any                       { return d.parent.Value(key) }
