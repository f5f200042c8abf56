package keyleash_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	keyleash "github.com/keyleash/keyleash-go"
)

// Offline tests of minting and narrowing: the shared vectors, the chain, the validation.

type mintingVectors struct {
	Secret         string `json:"secret"`
	MintingKeyID   string `json:"minting_key_id"`
	Version        int    `json:"version"`
	SecretBytesHex string `json:"secret_bytes_hex"`
	Mint           []struct{ Block, Token, ID string }
	Narrow         []struct{ Parent, Block, Token, ID string }
	Malformed      []string
}

func loadVectors(t testing.TB) mintingVectors {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "minting-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v mintingVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Mint) == 0 || len(v.Narrow) == 0 || len(v.Malformed) == 0 {
		t.Fatal("the vector file has no vectors")
	}
	return v
}

func vectorMinter(t testing.TB, v mintingVectors) *keyleash.Minter {
	t.Helper()
	m, err := keyleash.NewMinter(v.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// verifyChain recomputes a token's HMAC chain from the raw secret, independently of the SDK.
func verifyChain(t *testing.T, secret []byte, token string) {
	t.Helper()
	parts := strings.Split(token[strings.IndexByte(token, '.')+1:], ".")
	key := secret
	for _, seg := range parts[:len(parts)-1] {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(seg))
		key = h.Sum(nil)
	}
	if got := base64.RawURLEncoding.EncodeToString(key); got != parts[len(parts)-1] {
		t.Fatalf("the chain does not verify: signature %s, want %s", parts[len(parts)-1], got)
	}
}

// lastBlock is the raw JSON text of a token's last block.
func lastBlock(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[len(parts)-2])
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func wantMintError(t *testing.T, err error, param string) {
	t.Helper()
	var me *keyleash.MintError
	if !errors.As(err, &me) {
		t.Fatalf("want a *keyleash.MintError for %s, got %#v", param, err)
	}
	if me.Param != param {
		t.Fatalf("MintError names %q (%v), want %q", me.Param, me, param)
	}
	if !strings.Contains(me.Error(), param) {
		t.Fatalf("the message does not name the parameter: %q", me.Error())
	}
}

func TestMinterReadsTheVectorSecret(t *testing.T) {
	v := loadVectors(t)
	m := vectorMinter(t, v)
	if m.MintingKeyID() != v.MintingKeyID || m.Version() != v.Version || m.Mode() != "test" {
		t.Fatalf("minter %s v%d %s", m.MintingKeyID(), m.Version(), m.Mode())
	}
	if got := hex.EncodeToString(m.SecretBytes()); got != v.SecretBytesHex {
		t.Fatalf("secret bytes %s, want %s", got, v.SecretBytesHex)
	}
}

func TestSigningTheVectorBlocksGivesTheVectorTokens(t *testing.T) {
	v := loadVectors(t)
	m := vectorMinter(t, v)
	for i, vec := range v.Mint {
		if got := m.SignBlock(vec.Block); got != vec.Token {
			t.Errorf("mint vector %d:\n got %s\nwant %s", i, got, vec.Token)
		}
		mode, blocks, err := keyleash.DecodeMintedToken(vec.Token)
		if err != nil || mode != "test" || len(blocks) != 1 || blocks[0]["id"] != vec.ID {
			t.Errorf("mint vector %d decodes to %v %s %v", i, err, mode, blocks)
		}
	}
	if v.Mint[0].Token == v.Mint[1].Token {
		t.Fatal("the whitespace vector must differ: the MAC covers the text")
	}
}

func TestNarrowingTheVectorParentsGivesTheVectorTokens(t *testing.T) {
	v := loadVectors(t)
	for i, vec := range v.Narrow {
		got, err := keyleash.AppendBlock(vec.Parent, vec.Block)
		if err != nil {
			t.Fatal(err)
		}
		if got != vec.Token {
			t.Errorf("narrow vector %d:\n got %s\nwant %s", i, got, vec.Token)
		}
		_, blocks, err := keyleash.DecodeMintedToken(vec.Token)
		if err != nil || blocks[len(blocks)-1]["id"] != vec.ID {
			t.Errorf("narrow vector %d decodes to %v %v", i, err, blocks)
		}
	}
	// The vectors form one chain: root → child → grandchild.
	if v.Narrow[0].Parent != v.Mint[0].Token || v.Narrow[1].Parent != v.Narrow[0].Token {
		t.Fatal("the narrow vectors do not extend the mint vector")
	}
}

func TestDecodeMintedTokenReadsEveryBlockExactly(t *testing.T) {
	v := loadVectors(t)
	mode, blocks, err := keyleash.DecodeMintedToken(v.Narrow[1].Token)
	if err != nil {
		t.Fatal(err)
	}
	if mode != "test" || len(blocks) != 3 {
		t.Fatalf("%s %d blocks", mode, len(blocks))
	}
	root := blocks[0]
	if root["mk"] != v.MintingKeyID || root["kv"] != json.Number("1") || root["cap"] != json.Number("100000000") ||
		root["vendor"] != "stripe" || !reflect.DeepEqual(root["endpoints"], []any{"/v1/payment_intents", "/v1/payment_intents/*", "POST /v1/refunds"}) {
		t.Fatalf("root block %v", root)
	}
	if blocks[1]["label"] != "refund-tool" || blocks[1]["exp"] != json.Number("1796083800") {
		t.Fatalf("child block %v", blocks[1])
	}
	if !reflect.DeepEqual(blocks[2]["methods"], []any{"POST"}) || !reflect.DeepEqual(blocks[2]["metadata"], map[string]any{"tool": "refund"}) {
		t.Fatalf("grandchild block %v", blocks[2])
	}
}

func TestMalformedTokensAreRefused(t *testing.T) {
	v := loadVectors(t)
	root := v.Mint[0].Token
	sig := root[strings.LastIndexByte(root, '.'):]
	seg := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	cases := append([]string{}, v.Malformed...)
	cases = append(cases,
		"",
		"vk_test_m1."+seg("not json")+sig,
		"vk_test_m1."+seg(`["an","array"]`)+sig,
		"vk_test_m1."+seg(`{"id":"x"} {"id":"y"}`)+sig,
		"vk_test_m1."+seg(`null`)+sig,
		"vk_test_m1.A"+sig,                                      // one base64 character is no byte
		"vk_test_0123456789abcdef0123456789abcdef",              // an issued key
		"vk_test_m1."+strings.Repeat(seg("{}")+".", 17)+sig[1:], // 17 blocks
		"vk_test_m1."+strings.Repeat("e", keyleash.MaxMintedTokenChars)+sig,
	)
	for i, tok := range cases {
		if _, _, err := keyleash.DecodeMintedToken(tok); err == nil {
			t.Errorf("case %d decoded: %.60q", i, tok)
		} else {
			wantMintError(t, err, "token")
		}
		if _, err := keyleash.Narrow(tok, keyleash.NarrowParams{Label: "x"}); err == nil {
			t.Errorf("case %d narrowed: %.60q", i, tok)
		}
	}
}

var vectorIAT = time.Unix(1796083200, 0)

// vectorLikeKey mints, at the vectors' iat, the key the first mint vector describes.
func vectorLikeKey(t *testing.T, m *keyleash.Minter) *keyleash.VaultKey {
	t.Helper()
	m.SetClock(func() time.Time { return vectorIAT.Add(400 * time.Millisecond) })
	k, err := m.Mint(keyleash.MintParams{
		Vendor:           "stripe",
		AllowedEndpoints: []string{"/v1/payment_intents", "/v1/payment_intents/*", "POST /v1/refunds"},
		DailyUSDCap:      keyleash.USD(100),
		ExpiresIn:        15 * time.Minute,
		Label:            "flask-u42-run7",
		Metadata:         map[string]string{"user_id": "u42"},
		Budgets:          []string{"user:u42"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMintWritesBlockZeroAndSignsIt(t *testing.T) {
	v := loadVectors(t)
	m := vectorMinter(t, v)
	k := vectorLikeKey(t, m)
	secret, _ := hex.DecodeString(v.SecretBytesHex)
	verifyChain(t, secret, k.Token)

	if !regexp.MustCompile(`^mkey_M1nt1ngKeyTestVector0001_[0-9A-Za-z]{24}$`).MatchString(k.ID) {
		t.Fatalf("id %s", k.ID)
	}
	// The vector's block with this key's id is exactly what Mint wrote.
	want := strings.Replace(v.Mint[0].Block, v.Mint[0].ID, k.ID, 1)
	if got := lastBlock(t, k.Token); got != want {
		t.Fatalf("block 0:\n got %s\nwant %s", got, want)
	}
	if !strings.HasPrefix(k.Token, "vk_test_m1.") || k.Origin != "minted" || k.MintingKeyID != v.MintingKeyID || k.ParentID != "" ||
		k.Status != "active" || k.Vendor != "stripe" || k.Mode != "test" || k.Label != "flask-u42-run7" ||
		*k.DailyUSDCap != 100 || *k.DailyCapMicros != 100_000_000 || k.Metadata["user_id"] != "u42" ||
		!reflect.DeepEqual(k.Budgets, []string{"user:u42"}) || len(k.AllowedEndpoints) != 3 || k.Methods != nil {
		t.Fatalf("key %+v", k)
	}
	if !k.CreatedAt.Equal(vectorIAT) || !k.ExpiresAt.Equal(vectorIAT.Add(15*time.Minute)) {
		t.Fatalf("created %v expires %v", k.CreatedAt, k.ExpiresAt)
	}
}

func TestMintDefaultsAndOmittedCaveats(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	m.SetClock(func() time.Time { return vectorIAT })
	k, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"mk":"mk_M1nt1ngKeyTestVector0001","kv":1,"id":%q,"mode":"test","vendor":"stripe","endpoints":["/v1/balance"],"iat":1796083200,"exp":1796084100}`, k.ID)
	if got := lastBlock(t, k.Token); got != want {
		t.Fatalf("block 0:\n got %s\nwant %s", got, want)
	}
	if k.DailyUSDCap != nil || k.DailyCapMicros != nil || k.Label != "" || len(k.Metadata) != 0 {
		t.Fatalf("key %+v", k)
	}
	// Sub-second lifetimes round up to whole seconds; a zero cap is a cap.
	k, err = m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/"}, ExpiresIn: 90*time.Second + time.Millisecond,
		DailyUSDCap: keyleash.USD(0), Methods: []string{"GET"}})
	if err != nil {
		t.Fatal(err)
	}
	_, blocks, _ := keyleash.DecodeMintedToken(k.Token)
	if blocks[0]["exp"] != json.Number("1796083291") || blocks[0]["cap"] != json.Number("0") || !reflect.DeepEqual(blocks[0]["methods"], []any{"GET"}) {
		t.Fatalf("block 0 %v", blocks[0])
	}
}

func TestMintWritesTextAsIs(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	k, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}, Label: "<a&b> ünï"})
	if err != nil {
		t.Fatal(err)
	}
	if got := lastBlock(t, k.Token); !strings.Contains(got, `"label":"<a&b> ünï"`) {
		t.Fatalf("block 0 %s", got)
	}
}

func TestUSDToMicrosIsExact(t *testing.T) {
	for usd, want := range map[float64]int64{0: 0, 0.1: 100_000, 19.99: 19_990_000, 100: 100_000_000, 0.000001: 1, 1.005: 1_005_000, 123456789.5: 123_456_789_500_000} {
		if got, err := keyleash.USDToMicros(usd); err != nil || got != want {
			t.Errorf("USDToMicros(%v) = %d, %v; want %d", usd, got, err, want)
		}
	}
	tenth := 0.1 // a variable: constant arithmetic would be exact
	for _, usd := range []float64{-0.01, tenth + 0.2, 0.0000001, 1e9, math.NaN(), math.Inf(1)} {
		if _, err := keyleash.USDToMicros(usd); err == nil {
			t.Errorf("USDToMicros(%v) succeeded", usd)
		}
	}
}

func TestMintValidation(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	ok := func() keyleash.MintParams {
		return keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/payment_intents"}}
	}
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	bigMeta := map[string]string{}
	for i := 0; i < 51; i++ {
		bigMeta[fmt.Sprintf("k%d", i)] = "v"
	}
	cases := []struct {
		name, param string
		edit        func(*keyleash.MintParams)
	}{
		{"no vendor", "Vendor", func(p *keyleash.MintParams) { p.Vendor = "" }},
		{"long vendor", "Vendor", func(p *keyleash.MintParams) { p.Vendor = strings.Repeat("v", 65) }},
		{"no endpoints", "AllowedEndpoints", func(p *keyleash.MintParams) { p.AllowedEndpoints = nil }},
		{"101 endpoints", "AllowedEndpoints", func(p *keyleash.MintParams) {
			p.AllowedEndpoints = many(101, func(i int) string { return fmt.Sprintf("/v1/x%d", i) })
		}},
		{"relative path", "AllowedEndpoints.0", func(p *keyleash.MintParams) { p.AllowedEndpoints = []string{"v1/charges"} }},
		{"unknown method", "AllowedEndpoints.1", func(p *keyleash.MintParams) { p.AllowedEndpoints = []string{"/ok", "FETCH /v1/charges"} }},
		{"two spaces", "AllowedEndpoints.0", func(p *keyleash.MintParams) { p.AllowedEndpoints = []string{"POST  /v1/charges"} }},
		{"empty segment", "AllowedEndpoints.0", func(p *keyleash.MintParams) { p.AllowedEndpoints = []string{"/v1//charges"} }},
		{"trailing slash", "AllowedEndpoints.0", func(p *keyleash.MintParams) { p.AllowedEndpoints = []string{"/v1/charges/"} }},
		{"query", "AllowedEndpoints.0", func(p *keyleash.MintParams) { p.AllowedEndpoints = []string{"/v1/charges?limit=1"} }},
		{"dot segment", "AllowedEndpoints.0", func(p *keyleash.MintParams) { p.AllowedEndpoints = []string{"/v1/../admin"} }},
		{"partial wildcard", "AllowedEndpoints.0", func(p *keyleash.MintParams) { p.AllowedEndpoints = []string{"/v1/pi_*"} }},
		{"non-ASCII", "AllowedEndpoints.0", func(p *keyleash.MintParams) { p.AllowedEndpoints = []string{"/v1/ch√rges"} }},
		{"empty methods", "Methods", func(p *keyleash.MintParams) { p.Methods = []string{} }},
		{"lowercase method", "Methods", func(p *keyleash.MintParams) { p.Methods = []string{"get"} }},
		{"negative cap", "DailyUSDCap", func(p *keyleash.MintParams) { p.DailyUSDCap = keyleash.USD(-1) }},
		{"sub-micro cap", "DailyUSDCap", func(p *keyleash.MintParams) { p.DailyUSDCap = keyleash.USD(0.0000001) }},
		{"NaN cap", "DailyUSDCap", func(p *keyleash.MintParams) { p.DailyUSDCap = keyleash.USD(math.NaN()) }},
		{"negative ttl", "ExpiresIn", func(p *keyleash.MintParams) { p.ExpiresIn = -time.Second }},
		{"long label", "Label", func(p *keyleash.MintParams) { p.Label = strings.Repeat("l", 201) }},
		{"long label in UTF-16", "Label", func(p *keyleash.MintParams) { p.Label = strings.Repeat("🔑", 101) }},
		{"newline in label", "Label", func(p *keyleash.MintParams) { p.Label = "run\n7" }},
		{"NUL in label", "Label", func(p *keyleash.MintParams) { p.Label = "run\x00" }},
		{"escape in label", "Label", func(p *keyleash.MintParams) { p.Label = "\x1b[31mred" }},
		{"DEL in label", "Label", func(p *keyleash.MintParams) { p.Label = "a\x7f" }},
		{"C1 in label", "Label", func(p *keyleash.MintParams) { p.Label = "a\u0085" }},
		{"last C1 in label", "Label", func(p *keyleash.MintParams) { p.Label = "a\u009f" }},
		{"RLO in label", "Label", func(p *keyleash.MintParams) { p.Label = "\u202eevil" }},
		{"isolate in label", "Label", func(p *keyleash.MintParams) { p.Label = "a\u2066b" }},
		{"last isolate in label", "Label", func(p *keyleash.MintParams) { p.Label = "a\u2069b" }},
		{"control in metadata", "Metadata.k", func(p *keyleash.MintParams) { p.Metadata = map[string]string{"k": "v\r\n"} }},
		{"bidi in metadata", "Metadata.k", func(p *keyleash.MintParams) { p.Metadata = map[string]string{"k": "v\u202a"} }},
		{"metadata key", "Metadata.a b", func(p *keyleash.MintParams) { p.Metadata = map[string]string{"a b": "x"} }},
		{"metadata value", "Metadata.k", func(p *keyleash.MintParams) { p.Metadata = map[string]string{"k": strings.Repeat("x", 501)} }},
		{"51 metadata pairs", "Metadata", func(p *keyleash.MintParams) { p.Metadata = bigMeta }},
		{"21 budgets", "Budgets", func(p *keyleash.MintParams) {
			p.Budgets = many(21, func(i int) string { return fmt.Sprintf("b%d", i) })
		}},
		{"budget id", "Budgets.1", func(p *keyleash.MintParams) { p.Budgets = []string{"user:u1", "user u2"} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := ok()
			c.edit(&p)
			k, err := m.Mint(p)
			if k != nil {
				t.Fatalf("minted %+v", k)
			}
			wantMintError(t, err, c.param)
		})
	}
	// The limits themselves are allowed.
	p := ok()
	p.Label = strings.Repeat("🔑", 100)
	p.AllowedEndpoints = []string{"/", "get /v1/*/x", "OPTIONS /v1/a:b@c"}
	p.Budgets = many(20, func(i int) string { return fmt.Sprintf("b%d", i) })
	if _, err := m.Mint(p); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
}

func TestNewMinter(t *testing.T) {
	v := loadVectors(t)
	t.Setenv("KEYLEASH_MINTING_KEY", "  "+v.Secret+"\n")
	m, err := keyleash.NewMinter("")
	if err != nil || m.MintingKeyID() != v.MintingKeyID {
		t.Fatalf("from the environment: %v", err)
	}
	t.Setenv("KEYLEASH_MINTING_KEY", "")
	_, err = keyleash.NewMinter("")
	wantMintError(t, err, "secret")
	for _, bad := range []string{
		"sk_test_123",
		strings.Replace(v.Secret, "klm_test_", "klm_prod_", 1),
		strings.Replace(v.Secret, "_1_", "_0_", 1),
		v.Secret[:len(v.Secret)-1],
		v.Secret + "A",
		strings.Replace(v.Secret, "M1nt1ng", "M1nt1n", 1),
	} {
		_, err := keyleash.NewMinter(bad)
		wantMintError(t, err, "secret")
	}
}

func TestMintedIDsAreRandomBase62(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	idRE := regexp.MustCompile(`^mkey_M1nt1ngKeyTestVector0001_([0-9A-Za-z]{24})$`)
	var mu sync.Mutex
	seen := map[string]bool{}
	chars := map[rune]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				k, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[k.ID] = true
				if sm := idRE.FindStringSubmatch(k.ID); sm != nil {
					for _, r := range sm[1] {
						chars[r] = true
					}
				} else {
					t.Errorf("id %s", k.ID)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 2000 {
		t.Fatalf("%d distinct ids of 2000", len(seen))
	}
	// 48,000 characters: every one of the 62 appears unless the alphabet is cut short.
	if len(chars) != 62 {
		t.Fatalf("%d distinct characters", len(chars))
	}
}

// ---- narrowing -----------------------------------------------------------------------------

func TestNarrowAppendsOneSignedBlock(t *testing.T) {
	v := loadVectors(t)
	secret, _ := hex.DecodeString(v.SecretBytesHex)
	root := vectorLikeKey(t, vectorMinter(t, v))

	child, err := keyleash.Narrow(root.Token, keyleash.NarrowParams{AllowedEndpoints: []string{"POST /v1/refunds"}, DailyUSDCap: keyleash.USD(5), Label: "refund-tool"})
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, secret, child.Token)
	if !strings.HasPrefix(child.Token, root.Token[:strings.LastIndexByte(root.Token, '.')+1]) {
		t.Fatal("the child does not extend the parent's blocks")
	}
	if got, want := lastBlock(t, child.Token), fmt.Sprintf(`{"id":%q,"endpoints":["POST /v1/refunds"],"cap":5000000,"label":"refund-tool"}`, child.ID); got != want {
		t.Fatalf("block:\n got %s\nwant %s", got, want)
	}
	if !strings.HasPrefix(child.ID, "mkey_M1nt1ngKeyTestVector0001_") || child.ID == root.ID || child.ParentID != root.ID ||
		child.MintingKeyID != v.MintingKeyID || child.Origin != "minted" || child.Vendor != "stripe" || child.Mode != "test" ||
		*child.DailyCapMicros != 5_000_000 || *child.DailyUSDCap != 5 || child.Label != "flask-u42-run7/refund-tool" ||
		!reflect.DeepEqual(child.AllowedEndpoints, []string{"POST /v1/refunds"}) || !reflect.DeepEqual(child.Budgets, []string{"user:u42"}) ||
		!child.ExpiresAt.Equal(root.ExpiresAt) || child.Metadata["user_id"] != "u42" {
		t.Fatalf("child %+v", child)
	}

	grand, err := keyleash.Narrow(child.Token, keyleash.NarrowParams{Methods: []string{"POST"}, Metadata: map[string]string{"tool": "refund"}})
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, secret, grand.Token)
	if got, want := lastBlock(t, grand.Token), fmt.Sprintf(`{"id":%q,"methods":["POST"],"metadata":{"tool":"refund"}}`, grand.ID); got != want {
		t.Fatalf("block:\n got %s\nwant %s", got, want)
	}
	if grand.ParentID != child.ID || grand.Label != "flask-u42-run7/refund-tool" || *grand.DailyCapMicros != 5_000_000 ||
		!reflect.DeepEqual(grand.Methods, []string{"POST"}) || !reflect.DeepEqual(grand.Metadata, map[string]string{"user_id": "u42", "tool": "refund"}) {
		t.Fatalf("grandchild %+v", grand)
	}
}

func TestNarrowedKeyReportsTheGatewaysLabel(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	narrow := func(token, label string) *keyleash.VaultKey {
		t.Helper()
		k, err := keyleash.Narrow(token, keyleash.NarrowParams{Label: label})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	root, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/x"}, Label: "run"})
	if err != nil {
		t.Fatal(err)
	}
	tool := narrow(root.Token, "refund-tool")
	kept := narrow(tool.Token, "")
	step := narrow(kept.Token, "step")
	if tool.Label != "run/refund-tool" || kept.Label != "run/refund-tool" || step.Label != "run/refund-tool/step" {
		t.Fatalf("labels %q %q %q", tool.Label, kept.Label, step.Label)
	}
	// The block holds the key's own part only; the gateway joins them.
	if got, want := lastBlock(t, tool.Token), fmt.Sprintf(`{"id":%q,"label":"refund-tool"}`, tool.ID); got != want {
		t.Fatalf("block:\n got %s\nwant %s", got, want)
	}
	bare, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/x"}})
	if err != nil {
		t.Fatal(err)
	}
	if sub, kept := narrow(bare.Token, "sub"), narrow(bare.Token, ""); sub.Label != "/sub" || kept.Label != "" {
		t.Fatalf("under an unlabelled parent: %q %q", sub.Label, kept.Label)
	}
	// The neighbours of the refused ranges stay allowed.
	for _, ok := range []string{" ", "~", "\u00a0", "\u2029", "\u202f", "\u2065", "\u206a", "é", "🔑"} {
		if k, err := keyleash.Narrow(root.Token, keyleash.NarrowParams{Label: ok, Metadata: map[string]string{"tool": ok}}); err != nil || k.Label != "run/"+ok {
			t.Fatalf("%q: %v %+v", ok, err, k)
		}
	}
}

func TestMiddlewareDefaultLabelReplacesControlCharacters(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	c := &keyleash.Client{}
	var label string
	h := c.Middleware(keyleash.MiddlewareOptions{Minter: m, Keys: []keyleash.KeySpec{{IssueParams: keyleash.IssueParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/x"}}}}})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			k, _ := keyleash.FromContext(r.Context())
			label = k.Label
		}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/k%0Ax%E2%80%AEy", nil)) // the path decodes to "/k\nx\u202ey"
	if rec.Code != 200 || label != "GET /k\uFFFDx\uFFFDy" {
		t.Fatalf("status %d, label %q: %s", rec.Code, label, rec.Body)
	}
}

func TestNarrowRefusesWidening(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	parent, err := m.Mint(keyleash.MintParams{
		Vendor:           "stripe",
		AllowedEndpoints: []string{"/v1/payment_intents", "/v1/payment_intents/*", "POST /v1/refunds"},
		Methods:          []string{"GET", "POST"},
		DailyUSDCap:      keyleash.USD(100),
		Metadata:         map[string]string{"user_id": "u42"},
	})
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name, param string
		p           keyleash.NarrowParams
	}{
		{"another path", "AllowedEndpoints.0", keyleash.NarrowParams{AllowedEndpoints: []string{"/v1/customers"}}},
		{"a longer path", "AllowedEndpoints.0", keyleash.NarrowParams{AllowedEndpoints: []string{"/v1/payment_intents/*/capture"}}},
		{"a wildcard over a literal", "AllowedEndpoints.0", keyleash.NarrowParams{AllowedEndpoints: []string{"/v1/*"}}},
		{"any method where one is allowed", "AllowedEndpoints.0", keyleash.NarrowParams{AllowedEndpoints: []string{"/v1/refunds"}}},
		{"another method", "AllowedEndpoints.0", keyleash.NarrowParams{AllowedEndpoints: []string{"GET /v1/refunds"}}},
		{"the second pattern", "AllowedEndpoints.1", keyleash.NarrowParams{AllowedEndpoints: []string{"/v1/payment_intents", "/v1/balance"}}},
		{"no endpoints", "AllowedEndpoints", keyleash.NarrowParams{AllowedEndpoints: []string{}}},
		{"an extra method", "Methods", keyleash.NarrowParams{Methods: []string{"POST", "DELETE"}}},
		{"a higher cap", "DailyUSDCap", keyleash.NarrowParams{DailyUSDCap: keyleash.USD(100.000001)}},
		{"a bad cap", "DailyUSDCap", keyleash.NarrowParams{DailyUSDCap: keyleash.USD(-1)}},
		{"a changed metadata pair", "Metadata.user_id", keyleash.NarrowParams{Metadata: map[string]string{"user_id": "u43"}}},
		{"a negative ttl", "ExpiresIn", keyleash.NarrowParams{ExpiresIn: -time.Minute}},
		{"a long label", "Label", keyleash.NarrowParams{Label: strings.Repeat("l", 201)}},
		{"a tab in the label", "Label", keyleash.NarrowParams{Label: "a\tb"}},
		{"C1 in the label", "Label", keyleash.NarrowParams{Label: "a\u0080"}},
		{"an override in the label", "Label", keyleash.NarrowParams{Label: "\u202d"}},
		{"an isolate in the label", "Label", keyleash.NarrowParams{Label: "\u2067"}},
		{"DEL in metadata", "Metadata.tool", keyleash.NarrowParams{Metadata: map[string]string{"tool": "\x7f"}}},
		{"an override in metadata", "Metadata.tool", keyleash.NarrowParams{Metadata: map[string]string{"tool": "\u202e"}}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			k, err := keyleash.Narrow(parent.Token, c.p)
			if k != nil {
				t.Fatalf("narrowed %+v", k)
			}
			wantMintError(t, err, c.param)
		})
	}
	allowed := []keyleash.NarrowParams{
		{AllowedEndpoints: []string{"POST /v1/payment_intents", "/v1/payment_intents/pi_123", "post /v1/refunds"}},
		{Methods: []string{"POST"}},
		{DailyUSDCap: keyleash.USD(100)},
		{Metadata: map[string]string{"user_id": "u42", "tool": "x"}},
	}
	for i, p := range allowed {
		if _, err := keyleash.Narrow(parent.Token, p); err != nil {
			t.Errorf("allowed case %d: %v", i, err)
		}
	}
	// Narrowing is checked against the chain so far, not only block 0.
	child, _ := keyleash.Narrow(parent.Token, keyleash.NarrowParams{AllowedEndpoints: []string{"/v1/payment_intents/*"}, DailyUSDCap: keyleash.USD(10)})
	_, err = keyleash.Narrow(child.Token, keyleash.NarrowParams{AllowedEndpoints: []string{"/v1/payment_intents"}})
	wantMintError(t, err, "AllowedEndpoints.0")
	_, err = keyleash.Narrow(child.Token, keyleash.NarrowParams{DailyUSDCap: keyleash.USD(11)})
	wantMintError(t, err, "DailyUSDCap")
}

func TestNarrowWithoutAParentCapTakesAnyCap(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	parent, _ := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}})
	child, err := keyleash.Narrow(parent.Token, keyleash.NarrowParams{DailyUSDCap: keyleash.USD(1e6)})
	if err != nil || *child.DailyCapMicros != 1e12 {
		t.Fatalf("%v %+v", err, child)
	}
}

func TestNarrowCutsALaterExpiryToTheParents(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	parent, err := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}, ExpiresIn: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	later, err := keyleash.Narrow(parent.Token, keyleash.NarrowParams{ExpiresIn: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := lastBlock(t, later.Token); strings.Contains(got, `"exp"`) || !later.ExpiresAt.Equal(parent.ExpiresAt) {
		t.Fatalf("block %s, expires %v (parent %v)", got, later.ExpiresAt, parent.ExpiresAt)
	}
	sooner, err := keyleash.Narrow(parent.Token, keyleash.NarrowParams{ExpiresIn: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	_, blocks, _ := keyleash.DecodeMintedToken(sooner.Token)
	exp, err := blocks[1]["exp"].(json.Number).Int64()
	if err != nil || !sooner.ExpiresAt.Equal(time.Unix(exp, 0)) || !sooner.ExpiresAt.Before(parent.ExpiresAt) {
		t.Fatalf("exp %v, expires %v (parent %v)", blocks[1]["exp"], sooner.ExpiresAt, parent.ExpiresAt)
	}
	// And a grandchild cannot outlive the shorter child either.
	grand, _ := keyleash.Narrow(sooner.Token, keyleash.NarrowParams{ExpiresIn: 5 * time.Minute})
	if !grand.ExpiresAt.Equal(sooner.ExpiresAt) {
		t.Fatalf("grandchild expires %v, child %v", grand.ExpiresAt, sooner.ExpiresAt)
	}
}

func TestNarrowStopsAtTheGatewaysLimits(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	k, _ := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}})
	for i := 1; i < keyleash.MaxChainBlocks; i++ {
		var err error
		if k, err = keyleash.Narrow(k.Token, keyleash.NarrowParams{Label: fmt.Sprint("depth-", i)}); err != nil {
			t.Fatalf("narrowing %d: %v", i, err)
		}
	}
	_, err := keyleash.Narrow(k.Token, keyleash.NarrowParams{Label: "one too many"})
	wantMintError(t, err, "token")

	k, _ = m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}})
	big := map[string]string{}
	for i := 0; i < 20; i++ {
		big[fmt.Sprint("k", i)] = strings.Repeat("x", 400)
	}
	_, err = keyleash.Narrow(k.Token, keyleash.NarrowParams{Metadata: big})
	wantMintError(t, err, "token")
}

func TestNarrowContext(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	ctx, err := m.MintContext(context.Background(), keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/payment_intents", "POST /v1/refunds"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err = m.MintContextNamed(ctx, "refunds", keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"POST /v1/refunds"}})
	if err != nil {
		t.Fatal(err)
	}
	wide, _ := keyleash.FromContextFor(ctx, "stripe")
	refunds, _ := keyleash.FromContextFor(ctx, "refunds")

	sub, child, err := keyleash.NarrowContext(ctx, "refunds", keyleash.NarrowParams{DailyUSDCap: keyleash.USD(1)})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := keyleash.FromContextFor(sub, "refunds"); got != child || child.ParentID != refunds.ID {
		t.Fatalf("the sub-call context holds %+v", got)
	}
	if got, _ := keyleash.FromContextFor(ctx, "refunds"); got != refunds {
		t.Fatal("the caller's context changed")
	}
	if got, _ := keyleash.FromContext(sub); got != wide {
		t.Fatal("the other key moved")
	}

	// "" narrows the first key; a vendor name finds the key stored under another name.
	sub, child, err = keyleash.NarrowContext(ctx, "", keyleash.NarrowParams{AllowedEndpoints: []string{"/v1/payment_intents"}})
	if err != nil || child.ParentID != wide.ID {
		t.Fatalf("%v %+v", err, child)
	}
	if got, _ := keyleash.FromContext(sub); got != child {
		t.Fatal("the first key was not replaced")
	}
	named := keyleash.WithVaultKey(context.Background(), "main", wide)
	sub, child, err = keyleash.NarrowContext(named, "stripe", keyleash.NarrowParams{Label: "sub"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := keyleash.FromContextFor(sub, "main"); got != child || len(keyleash.AllFromContext(sub)) != 1 {
		t.Fatalf("by vendor: %v", keyleash.AllFromContext(sub))
	}

	if _, _, err := keyleash.NarrowContext(context.Background(), "", keyleash.NarrowParams{}); !errors.Is(err, keyleash.ErrNoVaultKey) {
		t.Fatalf("no key: %v", err)
	}
	issued := keyleash.WithVaultKey(context.Background(), "stripe", &keyleash.VaultKey{ID: "key_1", Token: "vk_test_0123456789abcdef", Vendor: "stripe"})
	_, _, err = keyleash.NarrowContext(issued, "stripe", keyleash.NarrowParams{Label: "x"})
	wantMintError(t, err, "token")
}

func TestMiddlewareRefusesSpecsThatCannotBeMinted(t *testing.T) {
	m := vectorMinter(t, loadVectors(t))
	c := &keyleash.Client{}
	for name, spec := range map[string]keyleash.IssueParams{
		"rate limit":   {Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}, RateLimit: &keyleash.RateLimit{Requests: 1, Per: "second"}},
		"live mode":    {Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}, Mode: "live"},
		"bad lifetime": {Vendor: "stripe", AllowedEndpoints: []string{"/v1/balance"}, ExpiresIn: "forever"},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Keys[0]") {
					t.Fatalf("recovered %v", r)
				}
			}()
			c.Middleware(keyleash.MiddlewareOptions{Minter: m, Keys: []keyleash.KeySpec{{IssueParams: spec}}})
		})
	}
}

func BenchmarkMint(b *testing.B) {
	m := vectorMinter(b, loadVectors(b))
	p := keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/payment_intents", "/v1/payment_intents/*"}, DailyUSDCap: keyleash.USD(100), Label: "bench"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := m.Mint(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNarrow(b *testing.B) {
	m := vectorMinter(b, loadVectors(b))
	parent, _ := m.Mint(keyleash.MintParams{Vendor: "stripe", AllowedEndpoints: []string{"/v1/payment_intents", "/v1/payment_intents/*"}, DailyUSDCap: keyleash.USD(100)})
	p := keyleash.NarrowParams{AllowedEndpoints: []string{"POST /v1/payment_intents"}, DailyUSDCap: keyleash.USD(10)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := keyleash.Narrow(parent.Token, p); err != nil {
			b.Fatal(err)
		}
	}
}
