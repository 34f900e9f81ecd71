package main

// These tests build the authsvc binary and run it as an operator would,
// against a real PostgreSQL database.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/authsvc"
	"github.com/gatehouse/gatehouse/internal/testdb"
)

var (
	dbURL  string
	binary string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	db, err := testdb.New("cmd_authsvc")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	defer db.Drop()
	dbURL = db.URL
	dir, err := os.MkdirTemp("", "authsvc-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "authsvc")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// command prepares the binary with a clean environment plus env.
func command(t *testing.T, env map[string]string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DATA_DIR=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// runCmd runs the binary to completion and returns its exit code and output.
func runCmd(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := command(t, env, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

func TestKeygen(t *testing.T) {
	out := filepath.Join(t.TempDir(), "jwt.pem")
	code, _, stderr := runCmd(t, nil, "", "keygen", "-out", out)
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(out)
	key, err := authsvc.ParsePrivateKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if key.N.BitLen() != 4096 {
		t.Errorf("%d-bit key, want 4096", key.N.BitLen())
	}
	// An existing key is never overwritten.
	code, _, stderr = runCmd(t, nil, "", "keygen", "-out", out)
	if code == 0 || !strings.Contains(stderr, "exists") {
		t.Errorf("keygen over an existing file: exit %d, %q", code, stderr)
	}
	if b2, _ := os.ReadFile(out); !bytes.Equal(b, b2) {
		t.Error("the existing key was changed")
	}
}

func TestCreateAdminCommand(t *testing.T) {
	env := map[string]string{"DATABASE_URL": dbURL}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("Boot-Strap-Pass-1!\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A new address each run: the database outlives one run (-count).
	local := "root-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	code, _, stderr := runCmd(t, env, "", "create-admin", "--email", strings.ToUpper(local[:1])+local[1:]+"@Example.COM", "--password-file", pwFile)
	if code != 0 || !strings.Contains(stderr, "created admin") {
		t.Fatalf("create-admin: exit %d: %s", code, stderr)
	}
	role, active := userRow(t, local+"@example.com")
	if role != "admin" || !active {
		t.Errorf("created role %q active %v", role, active)
	}
	// Again, with the password on stdin: the account is kept and updated.
	code, _, stderr = runCmd(t, env, "Other-Strong-Pass-2!\n", "create-admin", "--email", local+"@example.com")
	if code != 0 || !strings.Contains(stderr, "now an active admin") {
		t.Fatalf("create-admin again: exit %d: %s", code, stderr)
	}

	failures := []struct {
		name  string
		env   map[string]string
		stdin string
		args  []string
		want  string
	}{
		{"weak password", env, "weak\n", []string{"create-admin", "--email", "w@example.com"}, "password: must be at least 8"},
		{"bad email", env, "Boot-Strap-Pass-1!\n", []string{"create-admin", "--email", "not-an-email"}, "--email"},
		{"missing email", env, "", []string{"create-admin"}, "--email is required"},
		{"missing password file", env, "", []string{"create-admin", "--email", "x@example.com", "--password-file", "/nonexistent"}, "nonexistent"},
		{"no DATABASE_URL", nil, "Boot-Strap-Pass-1!\n", []string{"create-admin", "--email", "x@example.com"}, "DATABASE_URL"},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, f.env, f.stdin, f.args...)
			if code != 1 || !strings.Contains(stderr, f.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, f.want)
			}
		})
	}
	var n int
	if err := queryRow(t, `SELECT count(*) FROM auth.users WHERE email IN ('w@example.com', 'x@example.com')`).Scan(&n); err != nil || n != 0 {
		t.Errorf("failed runs created %d users (%v)", n, err)
	}
}

func TestCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"frobnicate"}, nil, "unknown command"},
		{[]string{"serve"}, nil, "DATABASE_URL"},
		{nil, map[string]string{"DATABASE_URL": dbURL, "ACCESS_TOKEN_TTL": "1s"}, "ACCESS_TOKEN_TTL"},
		{[]string{"serve"}, map[string]string{"DATABASE_URL": dbURL, "JWT_PRIVATE_KEY_FILE": "/nonexistent.pem"}, "JWT_PRIVATE_KEY_FILE"},
		{[]string{"migrate"}, map[string]string{"DATABASE_URL": "postgres://u:p@127.0.0.1:1/x?connect_timeout=1"}, "DATABASE_URL"},
	} {
		code, _, stderr := runCmd(t, tc.env, "", tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("authsvc %v: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
	code, stdout, _ := runCmd(t, nil, "", "help")
	if code != 0 || !strings.Contains(stdout, "create-admin") {
		t.Errorf("help: exit %d %q", code, stdout)
	}
	if code, _, stderr := runCmd(t, map[string]string{"DATABASE_URL": dbURL}, "", "migrate"); code != 0 {
		t.Errorf("migrate: exit %d %s", code, stderr)
	}
}

// TestServe runs the service, generating its key on first start, creates an
// admin with the binary, logs in over HTTP and stops it with SIGTERM.
func TestServe(t *testing.T) {
	dataDir := t.TempDir()
	env := map[string]string{"DATABASE_URL": dbURL, "AUTHSVC_ADDR": "127.0.0.1:0", "DATA_DIR": dataDir}
	cmd := command(t, env, "serve")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	addrc := make(chan string, 1)
	var logs syncBuffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "authsvc listening" {
				addrc <- line.Addr
			}
		}
		done <- cmd.Wait()
	}()
	var base string
	select {
	case addr := <-addrc:
		base = "http://" + addr
	case err := <-done:
		done <- err
		t.Fatalf("authsvc exited: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("authsvc did not start:\n%s", logs.String())
	}
	keyFile := filepath.Join(dataDir, "keys", "jwt-private.pem")
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("generated key %s: %v %v", keyFile, st, err)
	}

	if res, err := http.Get(base + "/ready"); err != nil || res.StatusCode != 200 {
		t.Fatalf("/ready: %v %v", res, err)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("Serve-Admin-Pass-1!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, se := runCmd(t, map[string]string{"DATABASE_URL": dbURL}, "", "create-admin", "--email", "serve-admin@example.com",
		"--password-file", pwFile); code != 0 {
		t.Fatalf("create-admin: %s", se)
	}
	res, err := http.PostForm(base+"/api/auth/login", url.Values{"username": {"serve-admin@example.com"}, "password": {"Serve-Admin-Pass-1!"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(res.Body).Decode(&tok)
	res.Body.Close()
	if res.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("login: %d", res.StatusCode)
	}
	rq, _ := http.NewRequest(http.MethodGet, base+"/api/admin/users", nil)
	rq.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	res, err = http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("/api/admin/users with the admin's token: %d", res.StatusCode)
	}

	// SIGTERM drains and exits cleanly.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("authsvc did not stop on SIGTERM")
	}
}

func queryRow(t *testing.T, sql string, args ...any) pgx.Row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn.QueryRow(ctx, sql, args...)
}

func userRow(t *testing.T, email string) (role string, active bool) {
	t.Helper()
	if err := queryRow(t, `SELECT role, is_active FROM auth.users WHERE email = $1`, email).Scan(&role, &active); err != nil {
		t.Fatal(err)
	}
	return role, active
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
