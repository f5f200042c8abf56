package keyleash

import "time"

// Hooks for the tests (compiled only into the test binary).

// SignBlock closes an exact block 0 text with the minter's secret, as Mint does its own.
func (m *Minter) SignBlock(block string) string { return m.sign([]byte(block)) }

// SecretBytes is the HMAC key the secret decodes to.
func (m *Minter) SecretBytes() []byte { return append([]byte(nil), m.secret...) }

// SetClock sets the clock Mint reads iat from.
func (m *Minter) SetClock(now func() time.Time) { m.now = now }

// AppendBlock narrows token by an exact block text, as Narrow does its own.
func AppendBlock(token, block string) (string, error) { return appendBlock(token, []byte(block)) }
