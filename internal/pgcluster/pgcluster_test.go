package pgcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// newTestCluster prepares a cluster in a fresh directory the server user can
// reach (os.MkdirTemp makes it 0700, which only root could enter).
func newTestCluster(t *testing.T) *Cluster {
	t.Helper()
	if _, err := findBinDir(); err != nil {
		t.Skip(err)
	}
	tmp, err := os.MkdirTemp("", "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := New(filepath.Join(tmp, "cluster"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		os.RemoveAll(tmp)
	})
	return c
}

func query(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestCluster(t *testing.T) {
	c := newTestCluster(t)
	if c.serverDir != c.Dir {
		t.Errorf("server dir %s, want Dir %s (reachable)", c.serverDir, c.Dir)
	}
	dsn, err := c.Ensure("app")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if u.Scheme != "postgres" || u.Hostname() != "127.0.0.1" || u.Path != "/app" || u.User.Username() != superuser || len(pw) < 32 {
		t.Errorf("URL %s", dsn)
	}
	if got := query(t, dsn, "SELECT current_database()"); got != "app" {
		t.Errorf("connected to %q", got)
	}
	// Listens on loopback only, with no Unix socket, and asks for a password.
	if got := query(t, dsn, "SHOW listen_addresses"); got != "127.0.0.1" {
		t.Errorf("listen_addresses %q", got)
	}
	if got := query(t, dsn, "SHOW unix_socket_directories"); got != "" {
		t.Errorf("unix_socket_directories %q", got)
	}
	// Durable unless Throwaway: `make run` keeps its data here.
	if got := query(t, dsn, "SHOW fsync"); got != "on" {
		t.Errorf("fsync %q", got)
	}
	wrong := *u
	wrong.User = url.UserPassword(superuser, "wrong")
	if conn, err := pgx.Connect(context.Background(), wrong.String()); err == nil {
		conn.Close(context.Background())
		t.Error("connected with a wrong password")
	}
	st, err := os.Stat(filepath.Join(c.Dir, "password"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("password file: %v %v", st.Mode().Perm(), err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "initdb-pwfile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("initdb's password file was left behind: %v", err)
	}

	// A second Ensure reuses the running server and the existing database.
	pid := readPID(t, c)
	dsn2, err := c.Ensure("app")
	if err != nil {
		t.Fatal(err)
	}
	if dsn2 != dsn || readPID(t, c) != pid {
		t.Errorf("second Ensure: %s (pid %d), first %s (pid %d); want the same server", dsn2, readPID(t, c), dsn, pid)
	}
	// A second cluster value on the same directory (another process) too.
	c2, err := New(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	dsn3, started, err := c2.EnsureStarted("other")
	if err != nil {
		t.Fatal(err)
	}
	if started {
		// Its caller would then stop a server another process is using.
		t.Error("EnsureStarted on a running server reports that it started it")
	}
	if u3, _ := url.Parse(dsn3); u3.Host != u.Host || u3.Path != "/other" {
		t.Errorf("third Ensure %s", dsn3)
	}

	// CreateDatabase / DropDatabase.
	admin := strings.Replace(dsn, "/app?", "/postgres?", 1)
	if err := CreateDatabase(admin, "scratch-db", false); err != nil {
		t.Fatal(err)
	}
	if err := CreateDatabase(admin, "scratch-db", true); err != nil {
		t.Errorf("ifMissing on an existing database: %v", err)
	}
	var pgErr *pgconn.PgError
	if err := CreateDatabase(admin, "scratch-db", false); !errors.As(err, &pgErr) || pgErr.Code != "42P04" {
		t.Errorf("creating an existing database: %v", err)
	}
	scratch := strings.Replace(dsn, "/app?", "/scratch-db?", 1)
	// An open session does not stop the drop.
	conn, err := pgx.Connect(context.Background(), scratch)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := DropDatabase(admin, "scratch-db"); err != nil {
		t.Fatal(err)
	}
	if got := query(t, admin, "SELECT count(*)::text FROM pg_database WHERE datname = 'scratch-db'"); got != "0" {
		t.Errorf("database still listed after drop")
	}
	if err := DropDatabase(admin, "scratch-db"); err != nil {
		t.Errorf("dropping a missing database: %v", err)
	}

	// Stop, then Ensure starts it again with the same data.
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, running := c.runningPort(); running {
		t.Fatal("still running after Stop")
	}
	if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
		conn.Close(context.Background())
		t.Error("connected after Stop")
	}
	if err := c.Stop(); err != nil {
		t.Errorf("Stop of a stopped cluster: %v", err)
	}
	dsn4, started, err := c.EnsureStarted("app")
	if err != nil {
		t.Fatal(err)
	}
	if !started {
		t.Error("EnsureStarted after Stop does not report that it started the server")
	}
	if got := query(t, dsn4, "SELECT count(*)::text FROM pg_database WHERE datname = 'other'"); got != "1" {
		t.Error("a restarted cluster lost its databases")
	}

	// StopIfUnused leaves the server to another process that uses it (a
	// second `make test` still running), and stops it once that one exits.
	holder := exec.Command(os.Args[0], "-test.run=^TestHelperHoldUse$")
	holder.Env = append(os.Environ(), "PGCLUSTER_HOLD_DIR="+c.Dir)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "holding\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	stopped, err := c.StopIfUnused()
	if err != nil || stopped {
		t.Errorf("StopIfUnused while another process uses the cluster: stopped %v, %v", stopped, err)
	}
	if got := query(t, dsn4, "SELECT current_database()"); got != "app" {
		t.Errorf("server after StopIfUnused in use: connected to %q", got)
	}
	stdin.Close() // the helper exits without releasing: the kernel drops its lock
	if err := holder.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if stopped, err := c.StopIfUnused(); err != nil || !stopped {
		t.Errorf("StopIfUnused with no user: stopped %v, %v", stopped, err)
	}
	if _, running := c.runningPort(); running {
		t.Error("still running after StopIfUnused with no user")
	}
	// This process's own Use counts too.
	release, err := c.Use()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ensure("app"); err != nil {
		t.Fatal(err)
	}
	if stopped, err := c2.StopIfUnused(); err != nil || stopped {
		t.Errorf("StopIfUnused during this process's Use: stopped %v, %v", stopped, err)
	}
	release()
	if stopped, err := c2.StopIfUnused(); err != nil || !stopped {
		t.Errorf("StopIfUnused after release: stopped %v, %v", stopped, err)
	}
}

// TestHelperHoldUse is the other process of TestCluster: it marks the
// cluster in use, says so, and exits when its stdin closes.
func TestHelperHoldUse(t *testing.T) {
	dir := os.Getenv("PGCLUSTER_HOLD_DIR")
	if dir == "" {
		t.Skip("run by TestCluster")
	}
	c, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Use(); err != nil { // release dropped, as testdb does
		t.Fatal(err)
	}
	runtime.GC() // the lock must outlive a collection of what Use returned
	runtime.GC()
	fmt.Println("holding")
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0) // without release: the lock must die with the process
}

func readPID(t *testing.T, c *Cluster) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dataDir(), "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, ch := range strings.SplitN(string(b), "\n", 2)[0] {
		pid = pid*10 + int(ch-'0')
	}
	return pid
}

// As root, when the server user cannot enter Dir (a checkout under /root,
// say), the server's files move to a directory of its own under the temp
// dir, the same for every caller, and the cluster still works.
func TestClusterUnreachableDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root runs the server as another user")
	}
	if _, err := findBinDir(); err != nil {
		t.Skip(err)
	}
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil { // root's only
		t.Fatal(err)
	}
	c, err := New(filepath.Join(private, "inner", "cluster"))
	if err != nil {
		t.Fatal(err)
	}
	if c.serverDir == c.Dir || strings.HasPrefix(c.serverDir, private) {
		t.Fatalf("server dir %s for an unreachable %s", c.serverDir, c.Dir)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		os.RemoveAll(c.serverDir)
	})
	dsn, err := c.Ensure("x")
	if err != nil {
		t.Fatal(err)
	}
	if got := query(t, dsn, "SELECT current_database()"); got != "x" {
		t.Errorf("connected to %q", got)
	}
	if _, err := os.Stat(filepath.Join(c.serverDir, "pgdata", "PG_VERSION")); err != nil {
		t.Errorf("no data directory under %s: %v", c.serverDir, err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "password")); err != nil {
		t.Errorf("the password stays under Dir: %v", err)
	}
	// Another caller on the same Dir finds the same server.
	c2, err := New(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if dsn2, err := c2.Ensure("x"); err != nil || dsn2 != dsn {
		t.Errorf("second caller: %s, %v; want %s", dsn2, err, dsn)
	}
}

func TestFindBinDirMessage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "16", "bin"), 0o755); err != nil { // a version without initdb
		t.Fatal(err)
	}
	_, err := findBinDirUnder(root)
	if err == nil {
		t.Fatal("server binaries found with none on PATH or under the root")
	}
	if !strings.Contains(err.Error(), "initdb") || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("message %q should say what is missing and how to do without it", err)
	}
	// With two versions installed, the newer one (by number, not name).
	for _, v := range []string{"9.6", "15", "16"} {
		if err := os.MkdirAll(filepath.Join(root, v, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if v != "16" {
			if err := os.WriteFile(filepath.Join(root, v, "bin", "initdb"), nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if dir, err := findBinDirUnder(root); err != nil || dir != filepath.Join(root, "15", "bin") {
		t.Errorf("found %q, %v; want the newest version with initdb, 15", dir, err)
	}
}

// `db-stop --if-unused` on a cluster that was never created stops nothing
// and leaves no directory behind.
func TestStopIfUnusedNeverCreated(t *testing.T) {
	if _, err := findBinDir(); err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(t.TempDir(), "never")
	c, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if stopped, err := c.StopIfUnused(); err != nil || !stopped {
		t.Fatalf("stopped %v, %v; want true, nil", stopped, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("StopIfUnused created %s: %v", dir, err)
	}
}

// A throwaway cluster (the tests') trades durability for speed.
func TestThrowawayClusterSkipsFsync(t *testing.T) {
	c := newTestCluster(t)
	c.Throwaway = true
	dsn, err := c.Ensure("app")
	if err != nil {
		t.Fatal(err)
	}
	if got := query(t, dsn, "SHOW fsync"); got != "off" {
		t.Errorf("fsync %q", got)
	}
}

// A restarted server listens where it did before, so services that got the
// cluster's URL at start reconnect (found in review: `make run` answered
// 503 for good after the server was restarted on a new port).
func TestClusterKeepsItsPort(t *testing.T) {
	c := newTestCluster(t)
	c.Throwaway = true
	u1, err := c.Ensure("postgres")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	u2, err := c.Ensure("postgres")
	if err != nil {
		t.Fatal(err)
	}
	if u1 != u2 {
		t.Errorf("URL changed across a restart:\n %s\n %s", u1, u2)
	}
	// Taken by someone else meanwhile: another port, remembered.
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(u1)
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u3, err := c.Ensure("postgres")
	if err != nil {
		t.Fatal(err)
	}
	if u3 == u1 {
		t.Error("started on a port another process holds")
	}
}

// An existing cluster the server user can no longer reach is an error,
// not a reason to make a new, empty one elsewhere (found in review: after
// chmod 700 on the data directory's parent, a root `make run` started an
// empty cluster in /tmp and overwrote the old one's password).
func TestClusterBecomesUnreachable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root runs the server as another user")
	}
	c := newTestCluster(t)
	c.Throwaway = true
	if _, err := c.Ensure("postgres"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(filepath.Join(c.Dir, "password"))
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Dir(c.Dir)
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(parent, 0o755)
	c2, err := New(c.Dir)
	if err == nil {
		t.Cleanup(func() { _ = c2.Stop(); _ = os.RemoveAll(c2.serverDir) })
		c2.Throwaway = true
		_, err = c2.Ensure("postgres")
		t.Errorf("a new cluster was made in %s although %s/pgdata holds one (Ensure: %v)", c2.serverDir, c.Dir, err)
	} else if !strings.Contains(err.Error(), "chmod o+x") {
		t.Errorf("error %q does not say how to fix it", err)
	}
	if pw2, _ := os.ReadFile(filepath.Join(c.Dir, "password")); string(pw2) != string(pw) {
		t.Error("the existing cluster's password file was overwritten")
	}
}
