package keyleash

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// MintingKey is a minting key as the control API sends it: the policy every key minted from it
// is held to (docs/minting.md).
type MintingKey struct {
	ID               string   `json:"id"`
	Label            string   `json:"label"`
	Mode             string   `json:"mode"`
	Vendors          []string `json:"vendors"`
	AllowedEndpoints []string `json:"allowed_endpoints"`
	// MaxDailyUSDCap is the highest daily cap a minted key gets; nil: no maximum.
	MaxDailyUSDCap    *float64 `json:"max_daily_usd_cap"`
	MaxDailyCapMicros *int64   `json:"max_daily_cap_micros"`
	// MaxTTLSeconds is the longest a minted key lives, counted from when it was minted.
	MaxTTLSeconds int64 `json:"max_ttl"`
	// Budgets every minted key counts against; AllowedBudgets are the further ones a minted key
	// may name (exact ids, or a prefix ending in "*").
	Budgets        []string          `json:"budgets"`
	AllowedBudgets []string          `json:"allowed_budgets"`
	Metadata       map[string]string `json:"metadata"`
	Status         string            `json:"status"`
	// Version is the newest secret's version.
	Version   int                 `json:"version"`
	Versions  []MintingKeyVersion `json:"versions"`
	CreatedAt time.Time           `json:"created_at"`
	RevokedAt *time.Time          `json:"revoked_at"`
	// Secret (klm_…) is only set in the answers to CreateMintingKey and RotateMintingKey: give
	// it to the backend that mints (NewMinter, or KEYLEASH_MINTING_KEY).
	Secret string `json:"secret,omitempty"`
	// KeysRevoked is only set in the answer to RevokeMintingKey: the minted keys in use it stopped.
	KeysRevoked int `json:"keys_revoked,omitempty"`
}

// MintingKeyVersion is one secret version; keys minted with it are refused after RetiresAt.
type MintingKeyVersion struct {
	Version   int        `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	RetiresAt *time.Time `json:"retires_at"`
}

// CreateMintingKeyParams is what a minting key is created with.
type CreateMintingKeyParams struct {
	Label string `json:"label,omitempty"`
	// Mode: "test" (the default) or "live".
	Mode string `json:"mode,omitempty"`
	// Vendors minted keys may be for (required).
	Vendors []string `json:"vendors"`
	// AllowedEndpoints: the widest patterns a minted key can have (required).
	AllowedEndpoints []string `json:"allowed_endpoints"`
	// MaxDailyUSDCap: nil means no maximum. Use keyleash.USD(100).
	MaxDailyUSDCap *float64 `json:"max_daily_usd_cap,omitempty"`
	// MaxTTL: "30s", "5m", "1h", "1d"; empty means the server default (1h). See TTL.
	MaxTTL         string            `json:"max_ttl,omitempty"`
	Budgets        []string          `json:"budgets,omitempty"`
	AllowedBudgets []string          `json:"allowed_budgets,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
}

// MintingKeyList is one page of minting keys.
type MintingKeyList struct {
	Data       []MintingKey `json:"data"`
	HasMore    bool         `json:"has_more"`
	NextCursor *string      `json:"next_cursor"`
}

func mintingKeyPath(id string) string { return "/v1/minting_keys/" + url.PathEscape(id) }

// CreateMintingKey creates a minting key (the API answers 201). The answer's Secret is shown only
// this once.
func (c *Client) CreateMintingKey(ctx context.Context, p CreateMintingKeyParams) (*MintingKey, error) {
	return callFor[MintingKey](ctx, c, http.MethodPost, "/v1/minting_keys", p, http.StatusCreated)
}

// GetMintingKey reads a minting key (never its secret); an unknown id is ErrMintingKeyNotFound.
func (c *Client) GetMintingKey(ctx context.Context, id string) (*MintingKey, error) {
	return callFor[MintingKey](ctx, c, http.MethodGet, mintingKeyPath(id), nil, http.StatusOK)
}

// ListMintingKeys returns one page of minting keys; limit 0 means the server default, cursor ""
// the first page.
func (c *Client) ListMintingKeys(ctx context.Context, limit int, cursor string) (*MintingKeyList, error) {
	return callFor[MintingKeyList](ctx, c, http.MethodGet, pagePath("/v1/minting_keys", limit, cursor), nil, http.StatusOK)
}

// RotateMintingKey makes a new secret (version + 1), returned in Secret. Keys minted with older
// versions keep working for grace (whole seconds, rounded up; 0 means the server default, the
// minting key's max TTL), then are refused with key_expired, including ones already in use.
func (c *Client) RotateMintingKey(ctx context.Context, id string, grace time.Duration) (*MintingKey, error) {
	if grace < 0 {
		return nil, errors.New("keyleash: RotateMintingKey: grace must not be negative")
	}
	body := map[string]any{}
	if grace > 0 {
		body["grace_period"] = int64((grace + time.Second - 1) / time.Second)
	}
	return callFor[MintingKey](ctx, c, http.MethodPost, mintingKeyPath(id)+"/rotate", body, http.StatusOK)
}

// RevokeMintingKey revokes a minting key: from then on every key minted from it is refused
// (key_revoked), used or not; KeysRevoked counts the ones in use. Idempotent; an unknown id is
// ErrMintingKeyNotFound.
func (c *Client) RevokeMintingKey(ctx context.Context, id string) (*MintingKey, error) {
	return callFor[MintingKey](ctx, c, http.MethodDelete, mintingKeyPath(id), nil, http.StatusOK)
}
