package pgserver

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// osUser is the unprivileged OS user the server runs as when we are root.
type osUser struct {
	name     string
	uid, gid uint32
}

// serverUser returns the user to run PostgreSQL as: nil (the current user)
// unless we are root, which PostgreSQL refuses; then "postgres", else "nobody".
func serverUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var lookupErr error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			lookupErr = err
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("looking up user %s: bad uid %q or gid %q", name, u.Uid, u.Gid)
		}
		return &osUser{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("running as root and no unprivileged user for PostgreSQL: %w", lookupErr)
}

// apply makes cmd run as u. A nil u leaves cmd alone.
func (u *osUser) apply(cmd *exec.Cmd) {
	if u == nil {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid},
	}
}

// chown gives path to u. A nil u does nothing.
func (u *osUser) chown(path string) error {
	if u == nil {
		return nil
	}
	if err := os.Chown(path, int(u.uid), int(u.gid)); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, u.name, err)
	}
	return nil
}

// tempBase returns the directory to create Dir in. It is os.TempDir() unless
// that path is too long for a unix socket below it, or, when the server runs
// as another user, not traversable by that user; then it is /tmp.
func tempBase() string {
	base := os.TempDir()
	if len(base) > 60 {
		return "/tmp"
	}
	if os.Geteuid() != 0 {
		return base
	}
	for d := base; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return base
		}
	}
}

// mkdir creates dir for the server user.
func (s *Server) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return s.runAs.chown(dir)
}

// writeFile writes a file owned by the server user.
func (s *Server) writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(path, perm); err != nil { // in case it existed
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return s.runAs.chown(path)
}

// reaperScript runs in a separate process group. Once the process that called
// Start is gone, it shuts the postmaster down as if it crashed (SIGQUIT) and
// removes Dir. $1 is our pid, $2 the data directory, $3 Dir.
const reaperScript = `
while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
if [ -f "$2/postmaster.pid" ]; then
	pid=$(head -n 1 "$2/postmaster.pid")
	kill -QUIT "$pid" 2>/dev/null
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
fi
rm -rf "$3"
`

// startReaper starts the process that cleans up if we die without Stop.
func (s *Server) startReaper() error {
	cmd := exec.Command("/bin/sh", "-c", reaperScript, "lockguard-pgserver-reaper",
		strconv.Itoa(os.Getpid()), s.DataDir, s.Dir)
	// Its own process group, so a Ctrl-C meant for us does not kill it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting reaper: %w", err)
	}
	s.reaper = cmd
	go cmd.Wait() // reap it whenever it exits
	return nil
}

// stopReaper ends the reaper. The caller holds s.mu.
func (s *Server) stopReaper() {
	if s.reaper != nil {
		s.reaper.Process.Kill()
		s.reaper = nil
	}
}
