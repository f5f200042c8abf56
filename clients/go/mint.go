package keyleash

// Vault keys minted locally from a minting key, and narrowed by whoever holds one, with no
// network call either way (docs/minting.md). A token is `vk_<mode>_m1.` followed by base64url
// JSON blocks joined by dots and closed by an HMAC-SHA256 chain: sig_0 = HMAC(secret, block 0's
// text), sig_i = HMAC(sig_{i-1}, block i's text). Anyone can append a block (narrowing the key)
// but no one can take one away without the earlier signature. The gateway verifies the chain
// and enforces every caveat, and the minting key's own policy, on first use.

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The gateway's limits: 16 blocks (a minted key and 15 narrowings) and 8,192 characters.
const (
	MaxChainBlocks      = 16
	MaxMintedTokenChars = 8192
)

// DefaultMintTTL is how long a minted key lives when MintParams.ExpiresIn is 0.
const DefaultMintTTL = 15 * time.Minute

var (
	secretRE = regexp.MustCompile(`^klm_(test|live)_([0-9A-Za-z]{24})_([1-9][0-9]{0,5})_([A-Za-z0-9_-]{43})$`)
	tokenRE  = regexp.MustCompile(`^vk_(test|live)_m1\.((?:[A-Za-z0-9_-]+\.)+)([A-Za-z0-9_-]{43})$`)
	// What the gateway accepts as a pattern (policy/endpoints.ts): one space after an optional
	// method, then a decoded absolute path of printable ASCII.
	patternPathRE = regexp.MustCompile(`^/[\x21-\x7e]*$`)
	methodWordRE  = regexp.MustCompile(`^[A-Za-z]+$`)
	metadataKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,40}$`)
	budgetIDRE    = regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,100}$`)
	ttlRE         = regexp.MustCompile(`^([1-9][0-9]{0,8})(s|m|h|d)$`)
	usdRE         = regexp.MustCompile(`^([0-9]{1,9})(?:\.([0-9]{1,6}))?$`)
	// C0, DEL, C1 and the bidirectional overrides and isolates: the gateway refuses them in labels
	// and metadata (a token holding one fails as invalid_key), so they are refused at mint time.
	controlCharRE = regexp.MustCompile(`[\x00-\x1f\x{7f}-\x{9f}\x{202a}-\x{202e}\x{2066}-\x{2069}]`)
)

const controlCharReason = "must not hold control characters (C0, DEL, C1) or bidirectional overrides"

// LabelSeparator joins a narrowed key's label to its parent's, as the gateway records it.
const LabelSeparator = "/"

var endpointMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}

const methodList = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// MintError says a Mint or Narrow call was given something the gateway would refuse (or that
// would widen the key); Param names the parameter.
type MintError struct {
	Param   string
	Message string
}

func (e *MintError) Error() string { return "keyleash: " + e.Param + ": " + e.Message }

func mintErr(param, format string, args ...any) *MintError {
	return &MintError{Param: param, Message: fmt.Sprintf(format, args...)}
}

// MintParams is what a key is minted with.
type MintParams struct {
	// Vendor, e.g. "stripe"; the minting key must allow it.
	Vendor string
	// AllowedEndpoints are path patterns as for issued keys; the gateway intersects them with
	// the minting key's.
	AllowedEndpoints []string
	// Methods, when non-nil, allows only these (uppercase) methods on top of the patterns.
	Methods []string
	// DailyUSDCap in USD per UTC day (at most 6 decimals). nil: the minting key's maximum cap,
	// if it has one. Use keyleash.USD(100).
	DailyUSDCap *float64
	// ExpiresIn is the key's lifetime in whole seconds (rounded up); 0 means DefaultMintTTL.
	// The minting key's max TTL still applies.
	ExpiresIn time.Duration
	Label     string
	Metadata  map[string]string
	// Budgets (beyond the minting key's own) the key also counts against.
	Budgets []string
}

// NarrowParams is what a key is narrowed with; zero fields keep the parent's value.
type NarrowParams struct {
	// AllowedEndpoints, when non-nil: fewer endpoints, each within a pattern the parent has.
	AllowedEndpoints []string
	// Methods, when non-nil: fewer methods.
	Methods []string
	// DailyUSDCap: a cap no higher than the parent's. Every call also counts against the cap of
	// every key the new one came from.
	DailyUSDCap *float64
	// ExpiresIn: an earlier expiry; one past the parent's is cut to the parent's.
	ExpiresIn time.Duration
	// Label: the new key's own part of its label. The key's label is the parent's, then
	// LabelSeparator, then Label ("/Label" under an unlabelled parent), as the gateway records it;
	// "" keeps the parent's.
	Label string
	// Metadata is added to the parent's; a pair the parent has cannot be changed.
	Metadata map[string]string
}

// Minter mints vault keys from a minting key's secret (klm_…, shown once when the minting key
// was created or rotated). It does no I/O and is safe for concurrent use.
type Minter struct {
	mintingKeyID string
	mode         string
	version      int
	secret       []byte
	idPrefix     string
	head         string
	now          func() time.Time
	// The minting key's limits, when known (WithPolicy): the key objects report what the gateway
	// will enforce, since it clamps a key that asks for more.
	maxCapMicros *int64
	maxTTL       int64
}

// WithPolicy returns a copy of m that knows its minting key's limits (the *MintingKey from
// CreateMintingKey, GetMintingKey or RotateMintingKey), so the keys it mints report the scope
// the gateway enforces: a cap above MaxDailyCapMicros (or none) is reported as that maximum and
// an expiry past MaxTTLSeconds as iat + MaxTTLSeconds. The gateway clamps either way; tokens
// are the same.
func (m *Minter) WithPolicy(mk *MintingKey) *Minter {
	c := *m
	if mk != nil {
		c.maxCapMicros = mk.MaxDailyCapMicros
		c.maxTTL = mk.MaxTTLSeconds
	}
	return &c
}

// NewMinter returns a Minter for secret; "" reads KEYLEASH_MINTING_KEY.
func NewMinter(secret string) (*Minter, error) {
	if secret == "" {
		secret = os.Getenv("KEYLEASH_MINTING_KEY")
	}
	m := secretRE.FindStringSubmatch(strings.TrimSpace(secret))
	if m == nil {
		return nil, mintErr("secret", "is not a keyleash minting key secret (klm_test_… or klm_live_…)")
	}
	raw, err := base64.RawURLEncoding.DecodeString(m[4])
	if err != nil {
		return nil, mintErr("secret", "is not a keyleash minting key secret (its key part is not base64url)")
	}
	version, _ := strconv.Atoi(m[3])
	return &Minter{
		mintingKeyID: "mk_" + m[2],
		mode:         m[1],
		version:      version,
		secret:       raw,
		idPrefix:     "mkey_" + m[2] + "_",
		head:         "vk_" + m[1] + "_m1.",
		now:          time.Now,
	}, nil
}

// MintingKeyID is the id (mk_…) of the minting key the secret belongs to.
func (m *Minter) MintingKeyID() string { return m.mintingKeyID }

// Mode is "test" or "live": a test minting key only mints test keys.
func (m *Minter) Mode() string { return m.mode }

// Version is the secret's version; rotating the minting key makes a new one.
func (m *Minter) Version() int { return m.version }

// rootBlock is block 0; the field order is the one docs/minting.md lists.
type rootBlock struct {
	MK        string            `json:"mk"`
	KV        int               `json:"kv"`
	ID        string            `json:"id"`
	Mode      string            `json:"mode"`
	Vendor    string            `json:"vendor"`
	Endpoints []string          `json:"endpoints"`
	Methods   []string          `json:"methods,omitempty"`
	Cap       *int64            `json:"cap,omitempty"`
	IAT       int64             `json:"iat"`
	Exp       int64             `json:"exp"`
	Label     string            `json:"label,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Budgets   []string          `json:"budgets,omitempty"`
}

type narrowBlock struct {
	ID        string            `json:"id"`
	Endpoints []string          `json:"endpoints,omitempty"`
	Methods   []string          `json:"methods,omitempty"`
	Cap       *int64            `json:"cap,omitempty"`
	Exp       *int64            `json:"exp,omitempty"`
	Label     string            `json:"label,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// Mint returns a new vault key with its own id. Nothing is sent anywhere: the gateway checks the
// key against the minting key's policy on its first use.
func (m *Minter) Mint(p MintParams) (*VaultKey, error) {
	if p.Vendor == "" || jsLen(p.Vendor) > 64 {
		return nil, mintErr("Vendor", "must be a vendor name")
	}
	if err := checkEndpoints(p.AllowedEndpoints, "AllowedEndpoints"); err != nil {
		return nil, err
	}
	ttl := DefaultMintTTL
	if p.ExpiresIn != 0 {
		ttl = p.ExpiresIn
	}
	ttlSec, err := wholeSeconds(ttl, "ExpiresIn")
	if err != nil {
		return nil, err
	}
	var capMicros *int64
	if p.DailyUSDCap != nil {
		micros, err := usdToMicros(*p.DailyUSDCap, "DailyUSDCap")
		if err != nil {
			return nil, err
		}
		capMicros = &micros
	}
	if p.Methods != nil {
		if err := checkMethods(p.Methods); err != nil {
			return nil, err
		}
	}
	if err := checkLabel(p.Label); err != nil {
		return nil, err
	}
	if err := checkMetadata(p.Metadata); err != nil {
		return nil, err
	}
	if len(p.Budgets) > 20 {
		return nil, mintErr("Budgets", "may name at most 20 budgets")
	}
	for i, b := range p.Budgets {
		if !budgetIDRE.MatchString(b) {
			return nil, mintErr(fmt.Sprintf("Budgets.%d", i), "must be a budget id (1-100 of A-Z a-z 0-9 _ . : @ -)")
		}
	}
	suffix, err := randomBase62(24)
	if err != nil {
		return nil, err
	}
	iat := m.now().Unix()
	b := rootBlock{
		MK:        m.mintingKeyID,
		KV:        m.version,
		ID:        m.idPrefix + suffix,
		Mode:      m.mode,
		Vendor:    p.Vendor,
		Endpoints: p.AllowedEndpoints,
		Methods:   p.Methods,
		Cap:       capMicros,
		IAT:       iat,
		Exp:       iat + ttlSec,
		Label:     p.Label,
		Metadata:  p.Metadata,
		Budgets:   p.Budgets,
	}
	raw, err := marshalBlock(b)
	if err != nil {
		return nil, err
	}
	effCap, effExp := capMicros, b.Exp
	if m.maxCapMicros != nil && (effCap == nil || *effCap > *m.maxCapMicros) {
		v := *m.maxCapMicros
		effCap = &v
	}
	if m.maxTTL > 0 && effExp > iat+m.maxTTL {
		effExp = iat + m.maxTTL
	}
	return &VaultKey{
		ID:               b.ID,
		Token:            m.sign(raw),
		Label:            p.Label,
		Vendor:           p.Vendor,
		Mode:             m.mode,
		AllowedEndpoints: cloneStrings(p.AllowedEndpoints),
		Methods:          cloneStrings(p.Methods),
		DailyUSDCap:      microsToUSD(effCap),
		DailyCapMicros:   effCap,
		Metadata:         cloneMap(p.Metadata),
		Budgets:          cloneStrings(p.Budgets),
		Status:           "active",
		CreatedAt:        time.Unix(iat, 0).UTC(),
		ExpiresAt:        time.Unix(effExp, 0).UTC(),
		Origin:           "minted",
		MintingKeyID:     m.mintingKeyID,
	}, nil
}

// sign closes block 0 (its JSON text) with the first link of the chain.
func (m *Minter) sign(block []byte) string {
	seg := base64.RawURLEncoding.EncodeToString(block)
	return m.head + seg + "." + base64.RawURLEncoding.EncodeToString(chainLink(m.secret, seg))
}

// chainLink is one HMAC of the chain. It covers the base64url text, not the decoded bytes, so
// every distinct token string is a distinct key.
func chainLink(key []byte, segment string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(segment))
	return h.Sum(nil)
}

// appendBlock narrows token by one block (its JSON text): the parent's signature is the HMAC key
// of the next link.
func appendBlock(token string, block []byte) (string, error) {
	dot := strings.LastIndexByte(token, '.')
	if dot < 0 {
		return "", mintErr("token", "is not a minted vault key")
	}
	sig, err := base64.RawURLEncoding.DecodeString(token[dot+1:])
	if err != nil {
		return "", mintErr("token", "has a signature that is not base64url")
	}
	seg := base64.RawURLEncoding.EncodeToString(block)
	child := token[:dot] + "." + seg + "." + base64.RawURLEncoding.EncodeToString(chainLink(sig, seg))
	if len(child) > MaxMintedTokenChars {
		return "", mintErr("token", "would be longer than %d characters", MaxMintedTokenChars)
	}
	return child, nil
}

// marshalBlock writes compact JSON without HTML escaping, so a block reads as what it says.
func marshalBlock(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeMintedToken returns a minted token's mode and its blocks, the minted key's first. The
// blocks are as written, unverified: only the gateway can check the chain. Numbers are
// json.Number, so micro-dollar caps stay exact.
func DecodeMintedToken(token string) (mode string, blocks []map[string]any, err error) {
	var m []string
	if len(token) <= MaxMintedTokenChars {
		m = tokenRE.FindStringSubmatch(token)
	}
	if m == nil {
		return "", nil, mintErr("token", "is not a minted vault key (vk_test_m1.… or vk_live_m1.…)")
	}
	segs := strings.Split(strings.TrimSuffix(m[2], "."), ".")
	if len(segs) > MaxChainBlocks {
		return "", nil, mintErr("token", "has more than %d blocks", MaxChainBlocks)
	}
	blocks = make([]map[string]any, len(segs))
	for i, s := range segs {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return "", nil, mintErr("token", "block %d is not base64url", i)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var b map[string]any
		if err := dec.Decode(&b); err != nil || b == nil || dec.Decode(&struct{}{}) != io.EOF {
			return "", nil, mintErr("token", "block %d is not a JSON object", i)
		}
		blocks[i] = b
	}
	return m[1], blocks, nil
}

// chainState is what a chain of blocks claims (the gateway may grant less, never more).
type chainState struct {
	mk        string
	vendor    string
	endpoints []string
	methods   []string
	cap       *int64
	exp       int64
	label     string
	metadata  map[string]string
	budgets   []string
	lastID    string
}

func readChain(blocks []map[string]any) (*chainState, error) {
	bad := func(i int, field string) error {
		return mintErr("token", "block %d has no valid %q", i, field)
	}
	root := blocks[0]
	st := &chainState{metadata: map[string]string{}}
	var ok bool
	if st.mk, ok = root["mk"].(string); !ok || !strings.HasPrefix(st.mk, "mk_") {
		return nil, bad(0, "mk")
	}
	if st.vendor, ok = root["vendor"].(string); !ok {
		return nil, bad(0, "vendor")
	}
	if st.endpoints, ok = stringList(root["endpoints"]); !ok {
		return nil, bad(0, "endpoints")
	}
	if exp, ok := jsonInt(root["exp"]); ok {
		st.exp = exp
	} else {
		return nil, bad(0, "exp")
	}
	if v, has := root["budgets"]; has {
		if st.budgets, ok = stringList(v); !ok {
			return nil, bad(0, "budgets")
		}
	}
	for i, b := range blocks {
		if st.lastID, ok = b["id"].(string); !ok {
			return nil, bad(i, "id")
		}
		if v, has := b["endpoints"]; has && i > 0 {
			if st.endpoints, ok = stringList(v); !ok {
				return nil, bad(i, "endpoints")
			}
		}
		if v, has := b["methods"]; has {
			if st.methods, ok = stringList(v); !ok {
				return nil, bad(i, "methods")
			}
		}
		if v, has := b["cap"]; has && v != nil {
			c, ok := jsonInt(v)
			if !ok {
				return nil, bad(i, "cap")
			}
			if st.cap == nil || c < *st.cap {
				st.cap = &c
			}
		}
		if v, has := b["exp"]; has && i > 0 {
			e, ok := jsonInt(v)
			if !ok {
				return nil, bad(i, "exp")
			}
			if e < st.exp {
				st.exp = e
			}
		}
		if v, has := b["label"]; has {
			l, ok := v.(string)
			if !ok {
				return nil, bad(i, "label")
			}
			// As the gateway records it: each narrowing's label is appended to its parent's.
			if i > 0 {
				l = st.label + LabelSeparator + l
			}
			st.label = l
		}
		if v, has := b["metadata"]; has {
			md, ok := v.(map[string]any)
			if !ok {
				return nil, bad(i, "metadata")
			}
			for k, x := range md {
				s, ok := x.(string)
				if !ok {
					return nil, bad(i, "metadata")
				}
				// An ancestor's pair wins: a narrowing may add metadata, never change it.
				if _, set := st.metadata[k]; !set {
					st.metadata[k] = s
				}
			}
		}
	}
	return st, nil
}

// Narrow returns a narrower key from the token of one you hold (minted or already narrowed),
// without the minting secret or a network call. It appends caveats that can only take rights
// away, under a new id; the new key's spend also counts against every key it came from. Asking
// for more than the parent has (a pattern outside its endpoints, a higher cap, a method it
// lacks, a different value for one of its metadata pairs) is a *MintError; a later expiry is
// cut to the parent's.
func Narrow(parent string, p NarrowParams) (*VaultKey, error) {
	mode, blocks, err := DecodeMintedToken(parent)
	if err != nil {
		return nil, err
	}
	if len(blocks) >= MaxChainBlocks {
		return nil, mintErr("token", "is already narrowed %d times", MaxChainBlocks-1)
	}
	st, err := readChain(blocks)
	if err != nil {
		return nil, err
	}
	suffix, err := randomBase62(24)
	if err != nil {
		return nil, err
	}
	b := narrowBlock{ID: "mkey_" + st.mk[len("mk_"):] + "_" + suffix}
	parentID := st.lastID

	if p.AllowedEndpoints != nil {
		if err := checkEndpoints(p.AllowedEndpoints, "AllowedEndpoints"); err != nil {
			return nil, err
		}
		for i, w := range p.AllowedEndpoints {
			if !anyCovers(st.endpoints, w) {
				return nil, mintErr(fmt.Sprintf("AllowedEndpoints.%d", i), "%q is outside the key's endpoints", w)
			}
		}
		b.Endpoints = p.AllowedEndpoints
		st.endpoints = p.AllowedEndpoints
	}
	if p.Methods != nil {
		if err := checkMethods(p.Methods); err != nil {
			return nil, err
		}
		if st.methods != nil {
			for _, w := range p.Methods {
				if !contains(st.methods, w) {
					return nil, mintErr("Methods", "asks for %s, which the key does not have", w)
				}
			}
		}
		b.Methods = p.Methods
		st.methods = p.Methods
	}
	if p.DailyUSDCap != nil {
		micros, err := usdToMicros(*p.DailyUSDCap, "DailyUSDCap")
		if err != nil {
			return nil, err
		}
		if st.cap != nil && micros > *st.cap {
			return nil, mintErr("DailyUSDCap", "is higher than the key's own cap")
		}
		b.Cap = &micros
		st.cap = &micros
	}
	now := time.Now()
	if p.ExpiresIn != 0 {
		sec, err := wholeSeconds(p.ExpiresIn, "ExpiresIn")
		if err != nil {
			return nil, err
		}
		if want := now.Unix() + sec; want < st.exp {
			b.Exp = &want
			st.exp = want
		}
	}
	if p.Label != "" {
		if err := checkLabel(p.Label); err != nil {
			return nil, err
		}
		b.Label = p.Label
		st.label += LabelSeparator + p.Label
	}
	if len(p.Metadata) > 0 {
		if err := checkMetadata(p.Metadata); err != nil {
			return nil, err
		}
		for k, v := range p.Metadata {
			if old, set := st.metadata[k]; set && old != v {
				return nil, mintErr("Metadata."+k, "is set by the parent key")
			}
		}
		b.Metadata = p.Metadata
		for k, v := range p.Metadata {
			st.metadata[k] = v
		}
	}

	raw, err := marshalBlock(b)
	if err != nil {
		return nil, err
	}
	token, err := appendBlock(parent, raw)
	if err != nil {
		return nil, err
	}
	return &VaultKey{
		ID:               b.ID,
		Token:            token,
		Label:            st.label,
		Vendor:           st.vendor,
		Mode:             mode,
		AllowedEndpoints: cloneStrings(st.endpoints),
		Methods:          cloneStrings(st.methods),
		DailyUSDCap:      microsToUSD(st.cap),
		DailyCapMicros:   st.cap,
		Metadata:         st.metadata,
		Budgets:          st.budgets,
		Status:           "active",
		CreatedAt:        now.UTC().Truncate(time.Second),
		ExpiresAt:        time.Unix(st.exp, 0).UTC(),
		Origin:           "minted",
		MintingKeyID:     st.mk,
		ParentID:         parentID,
	}, nil
}

// USDToMicros converts USD (≥ 0, at most 6 decimals, at most 9 integer digits, so every
// micro-dollar stays exact as a JSON number) to exact micro-dollars, as minted caps carry them.
// It goes through the shortest decimal text of the float, so 19.99 is 19990000, never 19989999.
func USDToMicros(usd float64) (int64, error) { return usdToMicros(usd, "usd") }

func usdToMicros(usd float64, param string) (int64, error) {
	var m []string
	if !math.IsNaN(usd) && !math.IsInf(usd, 0) {
		m = usdRE.FindStringSubmatch(strconv.FormatFloat(usd, 'f', -1, 64))
	}
	if m == nil {
		return 0, mintErr(param, "must be a decimal USD amount ≥ 0 with at most 6 decimals")
	}
	whole, _ := strconv.ParseInt(m[1], 10, 64)
	frac, _ := strconv.ParseInt((m[2] + "000000")[:6], 10, 64)
	return whole*1_000_000 + frac, nil
}

func microsToUSD(micros *int64) *float64 {
	if micros == nil {
		return nil
	}
	return USD(float64(*micros) / 1e6)
}

func wholeSeconds(d time.Duration, param string) (int64, error) {
	if d <= 0 {
		return 0, mintErr(param, "must be a positive duration")
	}
	return int64((d + time.Second - 1) / time.Second), nil
}

// parseTTL reads an IssueParams.ExpiresIn ("30s", "5m", "1h", "1d") for minting.
func parseTTL(s string) (time.Duration, error) {
	m := ttlRE.FindStringSubmatch(s)
	if m == nil {
		return 0, mintErr("ExpiresIn", "must look like \"30s\", \"5m\", \"1h\" or \"1d\"")
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
	return time.Duration(n) * unit, nil
}

// checkEndpoints applies the gateway's pattern rules, so a key that would be refused on its
// first call is refused when it is made instead.
func checkEndpoints(v []string, param string) error {
	if len(v) == 0 || len(v) > 100 {
		return mintErr(param, "must be a list of 1-100 path patterns")
	}
	for i, p := range v {
		if msg := patternProblem(p); msg != "" {
			return mintErr(fmt.Sprintf("%s.%d", param, i), "%s", msg)
		}
	}
	return nil
}

func patternProblem(p string) string {
	if p == "" || jsLen(p) > 512 {
		return "must be \"/path\" or \"METHOD /path\" of at most 512 characters"
	}
	_, path := splitPattern(p)
	if !strings.HasPrefix(p, "/") {
		word := p
		if sp := strings.IndexByte(p, ' '); sp >= 0 {
			word = p[:sp]
		}
		if !methodWordRE.MatchString(word) || !endpointMethods[strings.ToUpper(word)] {
			return "must be \"/path\" or \"METHOD /path\" with METHOD one of " + methodList
		}
	}
	switch {
	case !patternPathRE.MatchString(path):
		return "must be \"/path\" or \"METHOD /path\" (one space), printable ASCII"
	case strings.ContainsAny(path, "?%#\\;"):
		return "must be a decoded path without a query, \"%\", \"#\", \"\\\" or \";\""
	}
	if path == "/" {
		return ""
	}
	for _, seg := range strings.Split(path[1:], "/") {
		switch {
		case seg == "":
			return "has an empty segment (double or trailing \"/\")"
		case seg == "." || seg == "..":
			return "has a dot segment"
		case seg != "*" && strings.Contains(seg, "*"):
			return "\"*\" must be a whole segment"
		}
	}
	return ""
}

// splitPattern returns a pattern's method ("" for any) and path.
func splitPattern(p string) (method, path string) {
	if strings.HasPrefix(p, "/") {
		return "", p
	}
	sp := strings.IndexByte(p, ' ')
	if sp < 0 {
		return strings.ToUpper(p), ""
	}
	return strings.ToUpper(p[:sp]), p[sp+1:]
}

// covers: every request inner matches is matched by outer. `*` stands for one whole segment.
func covers(outer, inner string) bool {
	om, op := splitPattern(outer)
	im, ip := splitPattern(inner)
	if om != "" && om != im {
		return false
	}
	oSegs, iSegs := strings.Split(op, "/"), strings.Split(ip, "/")
	if len(oSegs) != len(iSegs) {
		return false
	}
	for k := range oSegs {
		if oSegs[k] != "*" && oSegs[k] != iSegs[k] {
			return false
		}
	}
	return true
}

func anyCovers(outers []string, inner string) bool {
	for _, o := range outers {
		if covers(o, inner) {
			return true
		}
	}
	return false
}

func checkMethods(v []string) error {
	if len(v) == 0 {
		return mintErr("Methods", "must be a non-empty list of %s", methodList)
	}
	for _, m := range v {
		if !endpointMethods[m] {
			return mintErr("Methods", "must be a list of %s (got %q)", methodList, m)
		}
	}
	return nil
}

func checkMetadata(md map[string]string) error {
	if len(md) > 50 {
		return mintErr("Metadata", "may hold at most 50 pairs")
	}
	for k, v := range md {
		if !metadataKeyRE.MatchString(k) {
			return mintErr("Metadata."+k, "keys are 1-40 of A-Z a-z 0-9 _ . : -")
		}
		if jsLen(v) > 500 {
			return mintErr("Metadata."+k, "must be at most 500 characters")
		}
		if controlCharRE.MatchString(v) {
			return mintErr("Metadata."+k, controlCharReason)
		}
	}
	return nil
}

func checkLabel(l string) error {
	if jsLen(l) > 200 {
		return mintErr("Label", "must be at most 200 characters")
	}
	if controlCharRE.MatchString(l) {
		return mintErr("Label", controlCharReason)
	}
	return nil
}

// jsLen is a string's length as the gateway (JavaScript) counts it: UTF-16 code units.
func jsLen(s string) int {
	n := 0
	for _, r := range s {
		if r > 0xFFFF {
			n += 2
		} else {
			n++
		}
	}
	return n
}

func stringList(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(list))
	for i, x := range list {
		if out[i], ok = x.(string); !ok {
			return nil, false
		}
	}
	return out, true
}

func jsonInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Random ids without a syscall per key: bytes come from a pool refilled 4 KiB at a time.
var idPool struct {
	sync.Mutex
	buf  [4096]byte
	left int
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	idPool.Lock()
	defer idPool.Unlock()
	for len(out) < n {
		if idPool.left == 0 {
			if _, err := rand.Read(idPool.buf[:]); err != nil {
				return "", fmt.Errorf("keyleash: no randomness for a key id: %w", err)
			}
			idPool.left = len(idPool.buf)
		}
		b := idPool.buf[len(idPool.buf)-idPool.left]
		idPool.left--
		// Rejection sampling keeps every character uniform (256 is not a multiple of 62).
		if b < 248 {
			out = append(out, base62[b%62])
		}
	}
	return string(out), nil
}
