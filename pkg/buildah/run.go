package buildah

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// groupExitWait bounds how long run waits for the processes of a killed build to go away.
const groupExitWait = 10 * time.Second

// run runs buildah with the build's global arguments and args in dir, appending its output to the build log.
// buildah leads a process group of its own; when ctx ends the whole group is killed, and run returns only
// once no process of the group is left. A failure is a *BuildError without its tail.
func (b *Builder) run(ctx context.Context, w *work, dir string, args []string) error {
	args = append(w.globalArgs(), args...)
	logf, err := os.OpenFile(w.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening the build log %s: %w", w.logFile, err)
	}
	defer logf.Close()
	// Arguments hold paths and build arguments only; credentials are in the auth file.
	if _, err := fmt.Fprintf(logf, "+ %s %s\n", b.path, strings.Join(args, " ")); err != nil {
		return fmt.Errorf("writing the build log %s: %w", w.logFile, err)
	}
	cmd := exec.CommandContext(ctx, b.path, args...)
	cmd.Dir = dir
	cmd.Env = w.environ
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	runErr := cmd.Run()
	if cmd.Process != nil {
		// buildah's children (buildah-chroot-runtime, the RUN step's processes) share its group; make sure
		// none outlives it, so that nothing writes to the work dir while it is removed.
		if err := waitGroupGone(cmd.Process.Pid, groupExitWait); err != nil {
			return err
		}
	}
	if runErr == nil {
		return nil
	}
	be := &BuildError{Command: command(args[len(w.globalArgs()):]), ExitCode: -1, Err: runErr}
	var exitErr *exec.ExitError
	if errors.As(runErr, &exitErr) {
		be.ExitCode = exitErr.ExitCode()
	}
	return be
}

// command names the buildah subcommand of args: "bud", "push" or "manifest push".
func command(args []string) string {
	if len(args) > 1 && args[0] == "manifest" {
		return "manifest " + args[1]
	}
	if len(args) > 0 {
		return args[0]
	}
	return ""
}

// killGroup sends SIGKILL to the process group pgid.
func killGroup(pgid int) error {
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing process group %d: %w", pgid, err)
	}
	return nil
}

// waitGroupGone kills what is left of process group pgid and waits until none of its processes is alive
// (zombies do not count: they hold no files and are their new parent's to reap).
func waitGroupGone(pgid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		left := groupMembers(pgid)
		if left == 0 {
			return nil
		}
		if err := killGroup(pgid); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for buildah's processes (group %d) to exit: %d still running after %s", pgid, left, limit)
		}
		time.Sleep(delay)
	}
}

// groupMembers counts the live processes of process group pgid.
func groupMembers(pgid int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		state, group, ok := procStat(e.Name())
		if ok && group == pgid && state != "Z" && state != "X" {
			n++
		}
	}
	return n
}

// procStat reads the state and process group of process pid from /proc/<pid>/stat.
func procStat(pid string) (state string, pgid int, ok bool) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 3 {
		return "", 0, false
	}
	pgid, err = strconv.Atoi(fields[2])
	if err != nil {
		return "", 0, false
	}
	return fields[0], pgid, true
}
