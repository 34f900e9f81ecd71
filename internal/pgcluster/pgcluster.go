// Package pgcluster runs a private PostgreSQL cluster under a directory, for
// `make run` and the tests when DATABASE_URL is unset. It uses the system's
// server binaries (initdb, pg_ctl) and never touches a cluster it did not
// create. The cluster listens on 127.0.0.1 only, with a generated password.
//
// initdb refuses to run as root, so when the caller is root the server runs as
// the unprivileged "postgres" user (or PGCLUSTER_USER), which then owns the
// cluster's data directory.
package pgcluster

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// superuser is the role initdb creates; the cluster is private, so one role
// is enough.
const superuser = "gatehouse"

// Cluster is a private cluster rooted at Dir: Dir/pgdata holds the server's
// files, Dir/server.log its log, Dir/password the superuser's password.
type Cluster struct {
	Dir    string
	binDir string
	cred   *syscall.Credential // nil unless we run the server as another user
	// serverDir holds pgdata and the log: Dir, unless the server user cannot
	// reach Dir (a checkout under /root, say); then a directory of its own
	// under the system temp dir, named after Dir so every caller finds it.
	serverDir string
	// Throwaway runs the server with fsync off: faster, and a crash of the
	// machine may corrupt the cluster. For the tests' clusters only, never
	// for data someone keeps (`make run`'s). Read when the server starts.
	Throwaway bool
}

// New finds the server binaries and prepares (but does not start) a cluster.
func New(dir string) (*Cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: abs, binDir: bin, serverDir: abs}
	if os.Geteuid() == 0 {
		name := os.Getenv("PGCLUSTER_USER")
		if name == "" {
			name = "postgres"
		}
		u, err := user.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("running as root: initdb needs an unprivileged user %q to own the cluster (install the postgresql package, or set PGCLUSTER_USER): %w", name, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		sum := sha256.Sum256([]byte(abs))
		tempDir := filepath.Join(os.TempDir(), "gatehouse-pg-"+hex.EncodeToString(sum[:6]))
		inDir, inTemp := hasCluster(abs), hasCluster(tempDir)
		if err := c.checkReachable(); err != nil {
			// A cluster already in Dir is never traded for a new, empty
			// one: its data would seem lost, and initdb would overwrite
			// the password it needs.
			if inDir {
				return nil, fmt.Errorf("the private cluster in %s exists, but %v: make the directories above it enterable (chmod o+x), or set DATABASE_URL", abs, err)
			}
			c.serverDir = tempDir
		} else if inTemp && !inDir {
			// Made there while Dir was unreachable: keep using it.
			c.serverDir = tempDir
		}
	}
	return c, nil
}

// hasCluster reports whether dir/pgdata holds an initialised cluster.
func hasCluster(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "pgdata", "PG_VERSION"))
	return err == nil
}

// findBinDir looks for initdb on PATH, then under /usr/lib/postgresql/*/bin
// (Debian keeps the server binaries off PATH), newest version first.
func findBinDir() (string, error) { return findBinDirUnder("/usr/lib/postgresql") }

// findBinDirUnder is findBinDir with Debian's versioned install root as a
// parameter, so that a test can point it at an empty one.
func findBinDirUnder(root string) (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(root, "*", "bin"))
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin: install PostgreSQL (Debian: apt-get install postgresql) or set DATABASE_URL")
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func (c *Cluster) dataDir() string { return filepath.Join(c.serverDir, "pgdata") }

func (c *Cluster) logFile() string { return filepath.Join(c.serverDir, "server.log") }

// Ensure initialises the cluster if needed, starts it unless it is already
// running, and returns a URL for the given database (created if missing).
// Concurrent callers (parallel test binaries) are serialised by a lock file.
func (c *Cluster) Ensure(database string) (string, error) {
	url, _, err := c.EnsureStarted(database)
	return url, err
}

// EnsureStarted is Ensure, also reporting whether this call started the
// server. Only a caller that started it should stop it: another `make run`
// or test binary may be using a server it found running.
func (c *Cluster) EnsureStarted(database string) (url string, started bool, err error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", false, err
	}
	unlock, err := lockFile(filepath.Join(c.Dir, "lock"))
	if err != nil {
		return "", false, err
	}
	defer unlock()

	if _, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION")); err != nil {
		if err := c.initdb(); err != nil {
			return "", false, err
		}
	}
	port, running := c.runningPort()
	if !running {
		if port, err = c.start(); err != nil {
			return "", false, err
		}
		defer func() {
			// Started here but not handed over: not left running.
			if err != nil {
				_ = c.Stop()
			}
		}()
	}
	pw, err := os.ReadFile(filepath.Join(c.Dir, "password"))
	if err != nil {
		return "", false, err
	}
	admin := c.url(strings.TrimSpace(string(pw)), port, "postgres")
	if database != "" && database != "postgres" {
		if err = CreateDatabase(admin, database, true); err != nil {
			return "", false, err
		}
	}
	return c.url(strings.TrimSpace(string(pw)), port, database), !running, nil
}

func (c *Cluster) url(password string, port int, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

func (c *Cluster) initdb() error {
	// A half-made data directory from an interrupted initdb would make
	// initdb refuse; it holds nothing of value yet.
	_ = os.RemoveAll(c.dataDir())
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return err
	}
	password := hex.EncodeToString(pw)
	if err := os.WriteFile(filepath.Join(c.Dir, "password"), []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(c.serverDir, 0o755); err != nil {
		return err
	}
	// initdb reads the password from a file the server user can read; it is
	// removed as soon as initdb is done.
	pwfile := filepath.Join(c.serverDir, "initdb-pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if err := os.Mkdir(c.dataDir(), 0o700); err != nil {
		return err
	}
	if c.cred != nil {
		for _, p := range []string{pwfile, c.dataDir()} {
			if err := os.Chown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				return err
			}
		}
	}
	out, err := c.run("initdb", "-D", c.dataDir(), "-U", superuser, "--pwfile="+pwfile,
		"--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// checkReachable reports whether the server user can traverse the path to
// Dir (it cannot in a checkout under /root, for instance).
func (c *Cluster) checkReachable() error {
	for d := c.Dir; d != "/"; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			continue // not created yet: MkdirAll makes it traversable
		}
		if st.Mode().Perm()&0o001 == 0 {
			sys := st.Sys().(*syscall.Stat_t)
			if sys.Uid != c.cred.Uid && !(sys.Gid == c.cred.Gid && st.Mode().Perm()&0o010 != 0) {
				return fmt.Errorf("the PostgreSQL server runs as uid %d, which cannot enter %s", c.cred.Uid, d)
			}
		}
	}
	return nil
}

// runningPort reports the port of a live server from postmaster.pid (its
// fourth line), so a second caller reuses the server the first one started.
func (c *Cluster) runningPort() (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, false
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, _ := strconv.Atoi(strings.TrimSpace(lines[3]))
	if pid <= 0 || port <= 0 || syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
		conn.Close()
		return port, true
	}
	return 0, false
}

// portFile keeps the port the server last listened on. A restart reuses
// it when it is free, so services started with the cluster's URL (`make
// run`) reconnect after `db-stop` / `db-start` or a crash of the server.
func (c *Cluster) portFile() string { return filepath.Join(c.Dir, "port") }

func (c *Cluster) start() (int, error) {
	port := 0
	if b, err := os.ReadFile(c.portFile()); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 && p < 65536 && portFree(p) {
			port = p
		}
	}
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		port = p
		if err := os.WriteFile(c.portFile(), []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
			return 0, err
		}
	}
	logFile := c.logFile()
	if c.cred != nil {
		// pg_ctl, running as the server user, appends to the log.
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return 0, err
		}
		f.Close()
		if err := os.Chown(logFile, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return 0, err
		}
	}
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200", port)
	if c.Throwaway {
		opts += " -c fsync=off"
	}
	out, err := c.run("pg_ctl", "-D", c.dataDir(), "-l", logFile, "-o", opts, "-w", "-t", "60", "start")
	if err != nil {
		tail, _ := os.ReadFile(logFile)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return 0, fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, tail)
	}
	return port, nil
}

// Stop stops the server if it runs (fast mode: open sessions are ended).
func (c *Cluster) Stop() error {
	if _, running := c.runningPort(); !running {
		return nil
	}
	out, err := c.run("pg_ctl", "-D", c.dataDir(), "-m", "fast", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Use marks the cluster as in use by this process until release is called
// or the process exits (the kernel drops the lock then, even after a crash),
// so that StopIfUnused called elsewhere leaves the server running. Take it
// before Ensure: a StopIfUnused already under way finishes first, and Ensure
// then starts the server again. A caller may drop release and keep the mark
// until it exits (flock holds a raw descriptor, which no finalizer closes).
func (c *Cluster) Use() (release func(), err error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	return flock(filepath.Join(c.Dir, "users.lock"), syscall.LOCK_SH)
}

// StopIfUnused stops the server unless a process holds Use, and reports
// whether the server is stopped now. Two `make test` runs (or two `make run`)
// share one cluster: the first to finish must not stop it under the other.
func (c *Cluster) StopIfUnused() (stopped bool, err error) {
	if _, err := os.Stat(c.Dir); errors.Is(err, fs.ErrNotExist) {
		return true, nil // never created: nothing runs, and nothing to create
	}
	unlockUsers, err := flock(filepath.Join(c.Dir, "users.lock"), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer unlockUsers()
	// Same order as Use then Ensure (users.lock, then lock): no deadlock.
	unlock, err := lockFile(filepath.Join(c.Dir, "lock"))
	if err != nil {
		return false, err
	}
	defer unlock()
	if err := c.Stop(); err != nil {
		return false, err
	}
	return true, nil
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.binDir, name), args...)
	// The child changes directory after dropping to the server user.
	cmd.Dir = c.serverDir
	// The server must not inherit a caller's PG* settings or locale quirks.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + c.Dir}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	err := cmd.Run()
	return buf.Bytes(), err
}

// portFree reports whether 127.0.0.1:port can be listened on now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockFile takes an exclusive flock, released by the returned function.
func lockFile(path string) (func(), error) { return flock(path, syscall.LOCK_EX) }

// flock opens (creating) path and takes a flock of the given kind on it;
// release closes the descriptor, which drops the lock.
func flock(path string, how int) (release func(), err error) {
	fd, err := syscall.Open(path, syscall.O_CREAT|syscall.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(fd, how); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	return func() { _ = syscall.Close(fd) }, nil
}
