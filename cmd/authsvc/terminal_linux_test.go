package main

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: the controller side, and the path of
// the terminal side a child process takes as its stdin.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), "/dev/pts/" + strconv.Itoa(n)
}

// At a terminal, create-admin asks for the password twice and does not
// echo it (found in review: it read a visible line).
func TestCreateAdminAtATerminal(t *testing.T) {
	ctl, ttyPath := openPTY(t)
	defer ctl.Close()
	tty, err := os.OpenFile(ttyPath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	local := "tty-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const pw = "Typed-At-A-Tty-1!"
	cmd := command(t, map[string]string{"DATABASE_URL": dbURL}, "create-admin", "--email", local+"@example.com")
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// What the terminal shows (its echo) comes back on the controller.
	var shown bytes.Buffer
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ctl.Read(b)
			shown.Write(b[:n])
			if err != nil {
				return
			}
		}
	}()
	// Typed before the prompts appear: the terminal keeps the input, and
	// echo is checked on what it shows.
	time.Sleep(300 * time.Millisecond)
	if _, err := ctl.Write([]byte(pw + "\r")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := ctl.Write([]byte(pw + "\r")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("create-admin: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("create-admin did not finish:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "password: ") || !strings.Contains(stderr.String(), "again: ") {
		t.Errorf("prompts: %q", stderr.String())
	}
	if strings.Contains(shown.String(), pw) {
		t.Errorf("the password was echoed: %q", shown.String())
	}
	if role, active := userRow(t, local+"@example.com"); role != "admin" || !active {
		t.Errorf("role %q active %v", role, active)
	}
}

// Ctrl-C at the password prompt ends create-admin at once and leaves the
// terminal echoing again (found in review: it went on reading, echo off,
// until Enter).
func TestCreateAdminCtrlCAtThePrompt(t *testing.T) {
	ctl, ttyPath := openPTY(t)
	defer ctl.Close()
	tty, err := os.OpenFile(ttyPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	cmd := command(t, map[string]string{"DATABASE_URL": dbURL}, "create-admin", "--email", "ctrl-c@example.com")
	var stderr syncBuffer // read while the command writes it
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, &stderr
	// The terminal is the child's controlling terminal, so ^C is SIGINT.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, ctl) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "password: ") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // into ReadPassword, echo off
	if _, err := ctl.Write([]byte{0x03}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(stderr.String(), "interrupted") {
			t.Errorf("after Ctrl-C: %v, stderr %q", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("create-admin still waits 5 s after Ctrl-C; stderr %q", stderr.String())
	}
	st, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if st.Lflag&unix.ECHO == 0 {
		t.Error("the terminal was left without echo")
	}
}
