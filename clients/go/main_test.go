package keyleash_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The tests run against a real gateway: clients/testing/gateway.mjs starts the built keyleash
// package on ephemeral ports with the local Stripe sandbox as its Stripe upstream.

type gatewayInfo struct {
	APIURL           string `json:"api_url"`
	ProxyURL         string `json:"proxy_url"`
	AdminToken       string `json:"admin_token"`
	StripeTestSecret string `json:"stripe_test_secret"`
	InspectURL       string `json:"inspect_url"`
}

var gw gatewayInfo

type stripeRequest struct {
	Method        string         `json:"method"`
	Path          string         `json:"path"`
	Authorization string         `json:"authorization"`
	Form          map[string]any `json:"form"`
}

// stripeRequests is what the sandbox received: what Stripe would have seen.
func stripeRequests(t *testing.T) []stripeRequest {
	t.Helper()
	resp, err := http.Get(gw.InspectURL + "/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []stripeRequest
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMain(m *testing.M) {
	node := os.Getenv("NODE")
	if node == "" {
		node = "node"
	}
	script, _ := filepath.Abs(filepath.Join("..", "testing", "gateway.mjs"))
	cmd := exec.Command(node, script)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		panic(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		panic(err)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot start the gateway (%s %s): %v\n", node, script, err)
		os.Exit(1)
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &gw); err != nil || gw.APIURL == "" {
			fmt.Fprintf(os.Stderr, "the gateway did not start (build it with `npm run build -w packages/keyleash`): %q\n", line)
			_ = cmd.Process.Kill()
			os.Exit(1)
		}
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "the gateway did not start within 30 s")
		_ = cmd.Process.Kill()
		os.Exit(1)
	}
	code := m.Run()
	stdin.Close() // the script exits when its stdin closes
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
	}
	os.Exit(code)
}
